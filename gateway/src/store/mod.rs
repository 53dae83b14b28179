//! The SQL store for runtime-managed state. This first part holds what needs no database:
//! the virtual key format and the sealing of secret values.

mod crypto;
mod error;
pub mod keys;

pub use crypto::{OpenError, SealError, SealPurpose, SecretCipher};
pub use error::{ObjectKind, StoreError};
pub use keys::{PublicId, TokenHash};
