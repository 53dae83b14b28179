//! Stable, seeded pseudo-randomness: every "random" choice the mock makes
//! (fault probability draws, latency samples, generated text, ids) is a pure
//! function of the seed and a few counters, so a run can be replayed.
//!
//! The hash is FNV-1a folded through the splitmix64 finaliser: stable across
//! Rust versions and platforms (unlike `std`'s `DefaultHasher`).

/// splitmix64 finaliser: a bijective 64-bit mixer with good avalanche.
pub(crate) const fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Incremental stable hasher (FNV-1a over bytes, mixed on finish).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StableHasher(u64);

impl StableHasher {
    pub(crate) const fn new(seed: u64) -> Self {
        Self(0xcbf2_9ce4_8422_2325 ^ mix(seed))
    }

    pub(crate) fn bytes(mut self, bytes: &[u8]) -> Self {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
        }
        // A separator so ("ab","c") and ("a","bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
        self
    }

    pub(crate) fn str(self, s: &str) -> Self {
        self.bytes(s.as_bytes())
    }

    pub(crate) fn u64(self, v: u64) -> Self {
        self.bytes(&v.to_le_bytes())
    }

    pub(crate) const fn finish(self) -> u64 {
        mix(self.0)
    }
}

/// Maps 64 random bits to a float uniform in `[0, 1)`.
pub(crate) fn unit(bits: u64) -> f64 {
    // 53 bits of mantissa.
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The draw used by `selection: {probability: p}`: evaluation number `n`
/// (0-based) of rule `rule_id` on deployment `deployment` fires when the
/// returned value is `< p`. Exposed so a drill can predict the sequence.
pub fn selection_draw(seed: u64, deployment: &str, rule_id: &str, n: u64) -> f64 {
    unit(
        StableHasher::new(seed)
            .str("selection")
            .str(deployment)
            .str(rule_id)
            .u64(n)
            .finish(),
    )
}

/// Lower-case hex of `n` random bytes derived from `bits`.
pub(crate) fn hex_id(bits: u64, len: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(len);
    let mut state = bits;
    while out.len() < len {
        state = mix(state);
        for i in 0..16 {
            if out.len() == len {
                break;
            }
            let nibble = ((state >> (i * 4)) & 0xf) as usize;
            out.push(char::from(HEX[nibble]));
        }
    }
    out
}

/// Alphanumeric id (as used in Anthropic `msg_...`/`req_...` and OpenAI
/// `chatcmpl-...` ids) of `len` characters derived from `bits`.
pub(crate) fn alnum_id(bits: u64, len: usize) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(len);
    let mut state = bits;
    for _ in 0..len {
        state = mix(state);
        out.push(char::from(ALPHABET[(state % 62) as usize]));
    }
    out
}

/// A UUID-formatted (8-4-4-4-12) id derived from `bits`, as Azure uses for
/// `apim-request-id`.
pub(crate) fn uuid_like(bits: u64) -> String {
    let h = hex_id(bits, 32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hasher_is_stable_and_order_sensitive() {
        let a = StableHasher::new(1).str("ab").str("c").finish();
        let b = StableHasher::new(1).str("a").str("bc").finish();
        assert_ne!(a, b);
        assert_eq!(a, StableHasher::new(1).str("ab").str("c").finish());
        assert_ne!(a, StableHasher::new(2).str("ab").str("c").finish());
    }

    #[test]
    fn unit_is_in_range() {
        for i in 0..10_000u64 {
            let u = unit(mix(i));
            assert!((0.0..1.0).contains(&u));
        }
        assert_eq!(unit(0), 0.0);
        assert!(unit(u64::MAX) < 1.0);
    }

    #[test]
    fn selection_draw_is_roughly_uniform() {
        let n = 20_000;
        let below = (0..n)
            .filter(|i| selection_draw(7, "d", "r", *i) < 0.3)
            .count();
        let ratio = below as f64 / n as f64;
        assert!((0.28..0.32).contains(&ratio), "ratio {ratio}");
    }

    #[test]
    fn ids_have_requested_shape() {
        assert_eq!(hex_id(5, 32).len(), 32);
        assert_eq!(hex_id(5, 7).len(), 7);
        assert!(alnum_id(9, 24).chars().all(|c| c.is_ascii_alphanumeric()));
        let u = uuid_like(3);
        assert_eq!(u.len(), 36);
        assert_eq!(u.matches('-').count(), 4);
    }
}
