//! Bearer tokens. A token is its kind's prefix and 32 random base62 characters (~190 bits); only its
//! SHA-256 is stored. Because the stored value is a hash of a high-entropy secret, looking it up by
//! hash leaks nothing useful through timing; comparisons against configured tokens are constant-time.

use rand::Rng;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Admin,
    Server,
    Client,
    User,
}

impl TokenKind {
    pub const fn prefix(self) -> &'static str {
        match self {
            TokenKind::Admin => "adm_",
            TokenKind::Server => "sk_",
            TokenKind::Client => "pk_",
            TokenKind::User => "ut_",
        }
    }

    pub fn of(token: &str) -> Option<Self> {
        [TokenKind::Admin, TokenKind::Server, TokenKind::Client, TokenKind::User]
            .into_iter()
            .find(|k| token.starts_with(k.prefix()))
    }
}

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

pub fn generate(kind: TokenKind) -> String {
    let mut rng = rand::rng();
    let secret: String = (0..32).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("{}{secret}", kind.prefix())
}

pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn constant_time_equal(a: &str, b: &str) -> bool {
    constant_time_eq::constant_time_eq(a.as_bytes(), b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_tells_its_kind_by_prefix() {
        for kind in [TokenKind::Admin, TokenKind::Server, TokenKind::Client, TokenKind::User] {
            let token = generate(kind);
            assert_eq!(TokenKind::of(&token), Some(kind));
            assert_eq!(token.len(), kind.prefix().len() + 32);
        }
        assert_eq!(TokenKind::of("Bearer xyz"), None);
    }

    #[test]
    fn two_tokens_are_never_the_same_and_hash_differently() {
        let (a, b) = (generate(TokenKind::Server), generate(TokenKind::Server));
        assert_ne!(a, b);
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hash(&a), hash(&a.clone()));
        assert_eq!(hash(&a).len(), 64);
    }
}
