//! Keys for in-memory tables indexed by secrets (remembered logins, logins
//! in flight): an HMAC under a per-process random key, so nothing a table
//! holds can be attacked offline to recover a password, and nothing
//! survives a restart.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Makes table keys from secrets with one per-process random key.
pub struct SecretKeyer {
    key: Zeroizing<[u8; 32]>,
}

impl SecretKeyer {
    /// A keyer with a fresh random key.
    pub fn random() -> SecretKeyer {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::thread_rng().fill_bytes(key.as_mut());
        SecretKeyer { key }
    }

    /// The key of `parts`, in order. Each part is length-prefixed, so
    /// ("ab", "c") and ("a", "bc") get different keys.
    pub fn key_of(&self, parts: &[&str]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.as_ref())
            .expect("HMAC accepts keys of any length");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_kept_apart_and_keys_differ_between_processes() {
        let keyer = SecretKeyer::random();
        assert_eq!(keyer.key_of(&["a", "bc"]), keyer.key_of(&["a", "bc"]));
        assert_ne!(keyer.key_of(&["ab", "c"]), keyer.key_of(&["a", "bc"]));
        assert_ne!(keyer.key_of(&["abc"]), keyer.key_of(&["abc", ""]));
        assert_ne!(SecretKeyer::random().key_of(&["a"]), keyer.key_of(&["a"]));
    }
}
