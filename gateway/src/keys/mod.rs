//! Who is calling and with which settings: authentication and Key > Team > Global resolution.

pub mod auth;
pub mod cache;
pub mod effective;
pub mod global;
pub mod limits;
pub mod retention;
pub mod shared_limits;
pub mod spend;
pub mod virtual_key;
