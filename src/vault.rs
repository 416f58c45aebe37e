//! Webhook signing secrets at rest. They must stay recoverable (they sign every delivery), so they
//! are sealed with AES-256-GCM rather than hashed, under a key that never enters the database: from
//! `LOGBOOK_SECRET_KEY`, or on a single node a key file made on first start in the data folder. A
//! copy of the database alone reveals no secret. Each sealed value names its key, so a key can be
//! rotated: the old one is kept as a previous key until start-up has re-sealed everything.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How a sealed value starts: `sealed:v1:<key id>:<base64 of nonce, ciphertext and tag>`.
const PREFIX: &str = "sealed:v1:";
/// The key file's name in the data folder.
pub const KEY_FILE: &str = "secret.key";

/// 32 bytes of key, written as base64. Its `Debug` shows only the key id.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes).expect("the system's random source works");
        Self(bytes)
    }

    /// The key's public name: the first 8 hex digits of a hash of it.
    pub fn id(&self) -> String {
        let digest = Sha256::new().chain_update(b"logbook secret key id\0").chain_update(self.0).finalize();
        digest[..4].iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl std::str::FromStr for SecretKey {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        let bytes = STANDARD.decode(value.trim()).map_err(|_| "must be 32 bytes in base64 (openssl rand -base64 32)".to_owned())?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| format!("must be 32 bytes in base64, not {}", b.len()))?;
        Ok(Self(bytes))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.id())
    }
}

/// A secret as stored: sealed text, opened only by [`Vault::open`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedSecret(String);

impl SealedSecret {
    /// A stored value as read back (from a projection row).
    pub fn stored(text: String) -> Self {
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The id of the key it was sealed with; `None` for a plaintext value of an older version.
    pub fn key_id(&self) -> Option<&str> {
        self.0.strip_prefix(PREFIX)?.split_once(':').map(|(id, _)| id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("sealed with key {0}, which this node does not have (set LOGBOOK_SECRET_KEY, and LOGBOOK_PREVIOUS_SECRET_KEYS while rotating)")]
    UnknownKey(String),
    #[error("the sealed value is damaged or belongs to another record")]
    Damaged,
}

struct Key {
    id: String,
    key: LessSafeKey,
}

impl Key {
    fn new(secret: &SecretKey) -> Self {
        let key = UnboundKey::new(&AES_256_GCM, &secret.0).expect("a 32-byte key fits AES-256-GCM");
        Self { id: secret.id(), key: LessSafeKey::new(key) }
    }
}

/// Seals with the current key; opens with it or any previous one.
#[derive(Clone)]
pub struct Vault(Arc<Keys>);

struct Keys {
    current: Key,
    previous: Vec<Key>,
    random: SystemRandom,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vault(current {}, {} previous)", self.0.current.id, self.0.previous.len())
    }
}

impl Vault {
    pub fn new(current: &SecretKey, previous: &[SecretKey]) -> Self {
        let previous = previous.iter().filter(|k| *k != current).map(Key::new).collect();
        Self(Arc::new(Keys { current: Key::new(current), previous, random: SystemRandom::new() }))
    }

    /// The configured key, or else the data folder's key file, created (mode 0600) if missing.
    pub fn load(configured: Option<&SecretKey>, previous: &[SecretKey], data_dir: &Path) -> anyhow::Result<Self> {
        let current = match configured {
            Some(key) => key.clone(),
            None => key_file(data_dir)?,
        };
        Ok(Self::new(&current, previous))
    }

    pub fn current_key_id(&self) -> &str {
        &self.0.current.id
    }

    /// Seals `plaintext` for the record `context` (the webhook's id): a sealed value copied to
    /// another record does not open there.
    pub fn seal(&self, plaintext: &str, context: &str) -> SealedSecret {
        let mut nonce = [0u8; NONCE_LEN];
        self.0.random.fill(&mut nonce).expect("the system's random source works");
        let mut sealed = plaintext.as_bytes().to_vec();
        let keys = &self.0.current;
        keys.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut sealed)
            .expect("sealing a short secret cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        SealedSecret(format!("{PREFIX}{}:{}", keys.id, URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The plaintext of `sealed`. A plaintext value stored by a version before sealing is passed
    /// through, until start-up re-seals it.
    pub fn open(&self, sealed: &SealedSecret, context: &str) -> Result<String, VaultError> {
        let Some(rest) = sealed.0.strip_prefix(PREFIX) else {
            // Only a secret of the form this server makes; anything else would sign with junk.
            return if sealed.0.starts_with("whsec_") { Ok(sealed.0.clone()) } else { Err(VaultError::Damaged) };
        };
        let (id, data) = rest.split_once(':').ok_or(VaultError::Damaged)?;
        let key = std::iter::once(&self.0.current)
            .chain(&self.0.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| VaultError::UnknownKey(id.to_owned()))?;
        let mut bytes = URL_SAFE_NO_PAD.decode(data).map_err(|_| VaultError::Damaged)?;
        if bytes.len() < NONCE_LEN {
            return Err(VaultError::Damaged);
        }
        let mut ciphertext = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| VaultError::Damaged)?;
        let plain = key.key.open_in_place(nonce, Aad::from(context.as_bytes()), &mut ciphertext).map_err(|_| VaultError::Damaged)?;
        String::from_utf8(plain.to_vec()).map_err(|_| VaultError::Damaged)
    }

    /// `sealed` under the current key: `None` when it already is.
    pub fn reseal(&self, sealed: &SealedSecret, context: &str) -> Result<Option<SealedSecret>, VaultError> {
        if sealed.key_id() == Some(self.current_key_id()) {
            return Ok(None);
        }
        Ok(Some(self.seal(&self.open(sealed, context)?, context)))
    }
}

/// Reads the key file, or creates it readable by this user only.
fn key_file(data_dir: &Path) -> anyhow::Result<SecretKey> {
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            check_private(&path)?;
            text.parse().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create the data folder {}", data_dir.display()))?;
            let key = SecretKey::generate();
            // Written whole under a name of its own, then linked into place: a crash leaves no
            // half-written key, and of two processes starting at once the first link wins.
            let temporary = data_dir.join(format!(".{KEY_FILE}.{}", std::process::id()));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let written = options
                .open(&temporary)
                .and_then(|mut file| writeln!(file, "{}", key.to_base64()).and_then(|()| file.sync_all()))
                .and_then(|()| std::fs::hard_link(&temporary, &path));
            let _ = std::fs::remove_file(&temporary);
            match written {
                Ok(()) => {
                    tracing::info!(path = %path.display(), key_id = key.id(), "created the key that seals webhook secrets; back it up with the database");
                    Ok(key)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => key_file(data_dir),
                Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
            }
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(unix)]
fn check_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        bail!("{} is readable by others (mode {:o}); run chmod 600 on it", path.display(), mode & 0o777);
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_for_its_record() {
        let (old, new) = (SecretKey::generate(), SecretKey::generate());
        let vault = Vault::new(&old, &[]);
        let sealed = vault.seal("whsec_abc", "whk_1");
        assert!(!sealed.as_str().contains("whsec_abc"));
        assert_eq!(sealed.key_id(), Some(old.id().as_str()));
        assert_eq!(vault.open(&sealed, "whk_1").unwrap(), "whsec_abc");
        assert!(matches!(vault.open(&sealed, "whk_2"), Err(VaultError::Damaged)));
        assert_ne!(vault.seal("whsec_abc", "whk_1"), sealed, "every seal has a nonce of its own");

        // Rotation: the new key opens the old value as a previous key and re-seals it.
        assert!(matches!(Vault::new(&new, &[]).open(&sealed, "whk_1"), Err(VaultError::UnknownKey(_))));
        let rotated = Vault::new(&new, &[old]);
        let resealed = rotated.reseal(&sealed, "whk_1").unwrap().unwrap();
        assert_eq!(resealed.key_id(), Some(new.id().as_str()));
        assert_eq!(Vault::new(&new, &[]).open(&resealed, "whk_1").unwrap(), "whsec_abc");
        assert!(rotated.reseal(&resealed, "whk_1").unwrap().is_none());
    }

    #[test]
    fn plaintext_of_an_older_version_is_read_and_resealed_and_damage_is_refused() {
        let vault = Vault::new(&SecretKey::generate(), &[]);
        let legacy = SealedSecret::stored("whsec_old".into());
        assert_eq!(vault.open(&legacy, "whk_1").unwrap(), "whsec_old");
        assert!(vault.reseal(&legacy, "whk_1").unwrap().is_some());
        let mut damaged = vault.seal("whsec_abc", "whk_1").into_string();
        damaged.pop();
        assert!(matches!(vault.open(&SealedSecret::stored(damaged), "whk_1"), Err(VaultError::Damaged)));
        assert!(matches!(vault.open(&SealedSecret::stored(format!("{PREFIX}x")), "whk_1"), Err(VaultError::Damaged)));
    }

    #[test]
    fn keys_parse_from_base64_and_never_print() {
        let key = SecretKey::generate();
        let parsed: SecretKey = key.to_base64().parse().unwrap();
        assert_eq!(parsed, key);
        assert!(!format!("{key:?}").contains(&key.to_base64()));
        assert!("short".parse::<SecretKey>().is_err());
        assert!(STANDARD.encode([1u8; 16]).parse::<SecretKey>().unwrap_err().contains("not 16"));
    }

    #[test]
    fn the_key_file_is_made_private_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = Vault::load(None, &[], dir.path()).unwrap();
        let again = Vault::load(None, &[], dir.path()).unwrap();
        assert_eq!(first.current_key_id(), again.current_key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(KEY_FILE);
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(Vault::load(None, &[], dir.path()).unwrap_err().to_string().contains("chmod 600"));
        }
    }
}
