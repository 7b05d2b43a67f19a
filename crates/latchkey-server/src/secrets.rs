//! Secrets the embedded default needs (the store's root key pair and the dev
//! JWT secret), generated on first start and kept in the data dir with 0600
//! permissions so tokens and grants survive restarts.

use std::io::Write;
use std::path::Path;

use latchkey_domain::Secret;
use rand::RngCore;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct OnDisk {
    jwt_secret: String,
    store_access_key_id: String,
    store_secret_access_key: String,
}

pub struct DevSecrets {
    pub jwt_secret: Secret,
    pub store_access_key_id: String,
    pub store_secret_access_key: Secret,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Reads `{data_dir}/secrets.toml`, creating it (and the data dir) first if
/// it does not exist.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<DevSecrets> {
    create_private_dir(data_dir)?;
    let path = data_dir.join("secrets.toml");
    if !path.exists() {
        let fresh = OnDisk {
            jwt_secret: random_hex(32),
            store_access_key_id: format!("LK{}", random_hex(9).to_uppercase()),
            store_secret_access_key: random_hex(20),
        };
        let text = toml::to_string(&fresh)?;
        let tmp = data_dir.join(".secrets.toml.tmp");
        write_private(&tmp, text.as_bytes())?;
        // A concurrent first start may have won; either file is complete.
        std::fs::rename(&tmp, &path)?;
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let disk: OnDisk = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is malformed: {}", path.display(), e.message()))?;
    Ok(DevSecrets {
        jwt_secret: Secret::new(disk.jwt_secret),
        store_access_key_id: disk.store_access_key_id,
        store_secret_access_key: Secret::new(disk.store_secret_access_key),
    })
}

/// A fresh `lk_…` API key and the `sha256:<hex>` entry that lets the broker
/// recognise it without storing it.
pub fn new_api_key() -> (String, String) {
    use sha2::Digest;
    let key = format!("lk_{}", random_hex(24));
    let hash = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    (key, format!("sha256:{hash}"))
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused_with_0600() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let a = load_or_create(&data).unwrap();
        let b = load_or_create(&data).unwrap();
        assert_eq!(a.jwt_secret, b.jwt_secret);
        assert_eq!(a.store_access_key_id, b.store_access_key_id);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(data.join("secrets.toml"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
