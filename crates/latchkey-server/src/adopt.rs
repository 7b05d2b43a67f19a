//! The embedded store's in-process event hook: each object it writes is
//! reported to the broker at once (DESIGN §4, commit path 2). An object with
//! no row — written with prefix-wide `credentials` keys — is adopted, and a
//! pending `credentials` row is committed (`latchkey_api::broker::adopt::store_event`).
//!
//! The store is opened before the broker's state exists (the state needs the
//! store's address), so the hook is bound late; events before that, or after
//! the broker is gone, are left to the reconciler.

use std::sync::{Arc, OnceLock, Weak};

use latchkey_api::AppState;
use latchkey_api::broker::adopt;
use latchkey_api::broker::events::EventOutcome;
use latchkey_s3local::ObjectEvents;

#[derive(Default)]
pub(crate) struct StoreEvents {
    state: OnceLock<Weak<AppState>>,
}

impl StoreEvents {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn bind(&self, state: &Arc<AppState>) {
        let _ = self.state.set(Arc::downgrade(state));
    }
}

impl ObjectEvents for StoreEvents {
    fn object_created(&self, key: &str, _size: u64, _etag: &str) {
        let Some(state) = self.state.get().and_then(Weak::upgrade) else {
            return;
        };
        let key = key.to_owned();
        // Off the store's request task: the client's PUT answers at once,
        // and the HEAD this leads to is a new request to the store.
        tokio::spawn(async move {
            match adopt::store_event(&state, &key).await {
                Ok(EventOutcome::Deferred) => {
                    tracing::debug!(key, "store event deferred to the reconciler");
                }
                Ok(outcome) => tracing::debug!(key, ?outcome, "store event"),
                Err(err) => tracing::warn!(key, error = %err, "store event failed"),
            }
        });
    }
}
