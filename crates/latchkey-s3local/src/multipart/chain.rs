//! The running SHA-256 of a multipart upload's parts, so completing it
//! need not read them again.
//!
//! A completed object keeps the SHA-256 of all its bytes. Parts that arrive
//! in order (part 1, then 2, …: a tus upload, a proxied one, most
//! sequential clients) are hashed as they arrive, each continuing the hash
//! of the parts before it; completing then reads only the parts the chain
//! does not cover. The chain names the data file of every part it hashed,
//! and is used only when those are exactly the first parts completed, so a
//! part uploaded again, parts out of order or numbers skipped fall back to
//! reading. It lives in memory: after a restart, completing reads.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use sha2::Sha256;

use super::PartMeta;

/// The hash of an upload's parts 1..=`parts.len()`, in order.
#[derive(Clone, Default)]
pub(crate) struct Chain {
    /// Data file name of each part hashed.
    parts: Vec<String>,
    sha: Sha256,
}

impl Chain {
    /// The chain over the first parts of `completed`, with how many it
    /// covers; `None` when it hashed anything else.
    pub fn covering(self, completed: &[PartMeta]) -> Option<(Sha256, usize)> {
        let n = self.parts.len();
        let same =
            n <= completed.len() && self.parts.iter().zip(completed).all(|(d, p)| *d == p.data);
        same.then_some((self.sha, n))
    }
}

/// The chains of the uploads this process has seen created.
#[derive(Default)]
pub(crate) struct Chains(Mutex<HashMap<String, Chain>>);

impl Chains {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Chain>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new upload: nothing hashed yet.
    pub fn start(&self, upload_id: &str) {
        self.lock().insert(upload_id.to_owned(), Chain::default());
    }

    /// The hash to continue over part `number`, if it is the next one.
    pub fn next(&self, upload_id: &str, number: i32) -> Option<Sha256> {
        let chains = self.lock();
        let chain = chains.get(upload_id)?;
        (usize::try_from(number).ok() == Some(chain.parts.len() + 1)).then(|| chain.sha.clone())
    }

    /// Part `number`, stored as `data`, was hashed into `sha`. Ignored when
    /// another upload of the same part got there first.
    pub fn extend(&self, upload_id: &str, number: i32, data: &str, sha: Sha256) {
        let mut chains = self.lock();
        if let Some(chain) = chains.get_mut(upload_id)
            && usize::try_from(number).ok() == Some(chain.parts.len() + 1)
        {
            chain.parts.push(data.to_owned());
            chain.sha = sha;
        }
    }

    pub fn get(&self, upload_id: &str) -> Option<Chain> {
        self.lock().get(upload_id).cloned()
    }

    /// The upload completed or was aborted.
    pub fn forget(&self, upload_id: &str) {
        self.lock().remove(upload_id);
    }
}

#[cfg(test)]
mod tests {
    use sha2::Digest;

    use super::*;

    fn part(number: i32, data: &str) -> PartMeta {
        PartMeta {
            number,
            data: data.into(),
            size: 1,
            etag: String::new(),
            last_modified_ms: 0,
            sha256: None,
        }
    }

    fn hashed(chains: &Chains, number: i32, data: &str, bytes: &[u8]) -> bool {
        let Some(mut sha) = chains.next("u", number) else {
            return false;
        };
        sha.update(bytes);
        chains.extend("u", number, data, sha);
        true
    }

    #[test]
    fn parts_in_order_are_hashed_as_one_stream() {
        let chains = Chains::default();
        chains.start("u");
        assert!(hashed(&chains, 1, "1.a", b"hello "));
        assert!(!hashed(&chains, 3, "3.c", b"!"), "part 3 before part 2");
        assert!(hashed(&chains, 2, "2.b", b"world"));
        let completed = [part(1, "1.a"), part(2, "2.b"), part(3, "3.c")];
        let (sha, covered) = chains.get("u").unwrap().covering(&completed).unwrap();
        assert_eq!(covered, 2);
        assert_eq!(sha.finalize(), Sha256::digest(b"hello world"));
    }

    #[test]
    fn a_part_uploaded_again_or_skipped_voids_the_chain() {
        let chains = Chains::default();
        chains.start("u");
        assert!(hashed(&chains, 1, "1.a", b"x"));
        assert!(hashed(&chains, 2, "2.b", b"y"));
        // Part 2 again: the chain no longer names what will be completed.
        assert!(!hashed(&chains, 2, "2.new", b"z"));
        let again = [part(1, "1.a"), part(2, "2.new")];
        assert!(chains.get("u").unwrap().covering(&again).is_none());
        // Part 2 left out of the completed list.
        let skipped = [part(1, "1.a"), part(3, "3.c")];
        assert!(chains.get("u").unwrap().covering(&skipped).is_none());
        // Fewer parts completed than hashed.
        assert!(
            chains
                .get("u")
                .unwrap()
                .covering(&[part(1, "1.a")])
                .is_none()
        );
    }

    #[test]
    fn an_unknown_or_forgotten_upload_has_no_chain() {
        let chains = Chains::default();
        assert!(chains.next("u", 1).is_none());
        chains.start("u");
        chains.forget("u");
        assert!(chains.next("u", 1).is_none());
        assert!(chains.get("u").is_none());
    }
}
