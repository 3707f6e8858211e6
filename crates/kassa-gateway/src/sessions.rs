//! Terminal sessions: which working keys each terminal signed in with, by handle in the
//! security module. The store holds the truth (field 62 sealed under the master key, replaced
//! by every sign-in), so a restarted host, or another host process on the same database,
//! picks the keys up again; this map is a cache of handles in front of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kassa_crypto::{KeyHandle, KeyPurpose, MasterKey, SealedSecret, SecurityModule, WrappedWorkingKeys};
use kassa_store::gateway::WorkingKeysRecord;
use kassa_store::{Store, TerminalRecord};

use crate::GatewayError;

/// The working keys a terminal uses now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ActiveKeys {
    pub(crate) pin_key: KeyHandle,
    pub(crate) mac_key: KeyHandle,
    /// The stored form they came from; a different stored form means another sign-in.
    sealed: Vec<u8>,
}

#[derive(Debug, Default)]
struct Session {
    tmk: Option<KeyHandle>,
    keys: Option<ActiveKeys>,
    /// When `keys` were last compared with the store.
    keys_checked_at: Option<Instant>,
}

/// How long cached working keys are trusted before they are compared with the store again. A
/// sign-out, a re-initialisation (TMS) or a sign-in through another host process stops the
/// old keys working here within this time, at the cost of one small read per active terminal
/// per interval.
const KEYS_REVALIDATE_MS: u64 = 1_000;

/// Sessions of all terminals this process has seen.
#[derive(Debug)]
pub(crate) struct Sessions {
    store: Store,
    security: Arc<dyn SecurityModule>,
    master_key: Arc<MasterKey>,
    map: Mutex<HashMap<String, Session>>,
}

fn tmk_context(terminal_id: &str) -> String {
    format!("tmk:{terminal_id}")
}

fn keys_context(terminal_id: &str) -> String {
    format!("wk:{terminal_id}")
}

impl Sessions {
    pub(crate) fn new(store: Store, security: Arc<dyn SecurityModule>, master_key: Arc<MasterKey>) -> Sessions {
        Sessions { store, security, master_key, map: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The terminal's TMK in the security module, imported from the store on first use.
    fn tmk(&self, terminal: &TerminalRecord) -> Result<KeyHandle, GatewayError> {
        if let Some(handle) = self.lock().get(&terminal.terminal_id).and_then(|s| s.tmk) {
            return Ok(handle);
        }
        let sealed = SealedSecret::from_bytes(&terminal.tmk_sealed).map_err(|e| GatewayError::Keys(e.to_string()))?;
        let tmk = self
            .master_key
            .open_tdes_key(&sealed, &tmk_context(&terminal.terminal_id))
            .map_err(|e| GatewayError::Keys(e.to_string()))?;
        let handle = self.security.import_key(KeyPurpose::TerminalMaster, tmk)?;
        let mut map = self.lock();
        let session = map.entry(terminal.terminal_id.clone()).or_default();
        match session.tmk {
            // Another task imported it meanwhile: keep one handle.
            Some(existing) => {
                drop(map);
                let _ = self.security.remove_key(handle);
                Ok(existing)
            }
            None => {
                session.tmk = Some(handle);
                Ok(handle)
            }
        }
    }

    /// Sign-in: new working keys, stored before they are handed out. Returns field 62.
    pub(crate) async fn sign_in(
        &self,
        terminal: &TerminalRecord,
        at_ms: i64,
    ) -> Result<WrappedWorkingKeys, GatewayError> {
        let tmk = self.tmk(terminal)?;
        let issued = self.security.issue_working_keys(tmk)?;
        let sealed = self
            .master_key
            .seal(issued.field_62.as_bytes(), &keys_context(&terminal.terminal_id), &mut rand::rngs::OsRng)
            .map_err(|e| GatewayError::Keys(e.to_string()))?
            .as_bytes()
            .to_vec();
        let op = kassa_store::gateway::put_working_keys(&terminal.terminal_id, sealed.clone(), at_ms);
        // Removed again unless stored, also when the request is abandoned while its commit
        // waits (the database budget): else every abandoned sign-in would leak two keys of
        // the security module.
        let unstored = UnstoredKeys { security: &*self.security, keys: Some([issued.pin_key, issued.mac_key]) };
        self.store.commit(kassa_store::WriteUnit::ops(vec![op])).await?;
        unstored.keep();
        let keys = ActiveKeys { pin_key: issued.pin_key, mac_key: issued.mac_key, sealed };
        self.replace(&terminal.terminal_id, Some(keys));
        Ok(issued.field_62)
    }

    /// Sign-out: the keys stop working here and in the store.
    pub(crate) async fn sign_out(&self, terminal_id: &str) -> Result<(), GatewayError> {
        let op = kassa_store::gateway::delete_working_keys(terminal_id);
        self.store.commit(kassa_store::WriteUnit::ops(vec![op])).await?;
        self.replace(terminal_id, None);
        Ok(())
    }

    fn replace(&self, terminal_id: &str, keys: Option<ActiveKeys>) {
        let old = {
            let mut map = self.lock();
            let session = map.entry(terminal_id.to_owned()).or_default();
            session.keys_checked_at = Some(Instant::now());
            std::mem::replace(&mut session.keys, keys)
        };
        if let Some(old) = old {
            let _ = self.security.remove_key(old.pin_key);
            let _ = self.security.remove_key(old.mac_key);
        }
    }

    /// The keys the terminal signed in with, loading them from the store when this process has
    /// none. `None`: not signed in.
    pub(crate) async fn keys(&self, terminal: &TerminalRecord) -> Result<Option<ActiveKeys>, GatewayError> {
        let cached = self.lock().get(&terminal.terminal_id).and_then(|s| Some((s.keys.clone()?, s.keys_checked_at)));
        let fresh = |checked: Option<Instant>| {
            checked.is_some_and(|at| at.elapsed() < Duration::from_millis(KEYS_REVALIDATE_MS))
        };
        match cached {
            Some((keys, checked)) if fresh(checked) => Ok(Some(keys)),
            Some((keys, _)) => match self.store.gateway().working_keys(&terminal.terminal_id).await? {
                // Signed out or re-initialised elsewhere: the cached keys stop working.
                None => {
                    self.replace(&terminal.terminal_id, None);
                    Ok(None)
                }
                Some(record) if record.keys_sealed == keys.sealed => {
                    if let Some(session) = self.lock().get_mut(&terminal.terminal_id) {
                        session.keys_checked_at = Some(Instant::now());
                    }
                    Ok(Some(keys))
                }
                Some(record) => {
                    let keys = self.import(terminal, &record)?;
                    self.replace(&terminal.terminal_id, Some(keys.clone()));
                    Ok(Some(keys))
                }
            },
            None => self.reload(terminal, None).await,
        }
    }

    /// Reads the stored keys again (after a MAC failure: another process may have signed the
    /// terminal in). Returns the new keys when they differ from `current`, else `None`.
    pub(crate) async fn reload(
        &self,
        terminal: &TerminalRecord,
        current: Option<&ActiveKeys>,
    ) -> Result<Option<ActiveKeys>, GatewayError> {
        let Some(record) = self.store.gateway().working_keys(&terminal.terminal_id).await? else {
            return Ok(None);
        };
        if current.is_some_and(|keys| keys.sealed == record.keys_sealed) {
            return Ok(None);
        }
        let keys = self.import(terminal, &record)?;
        self.replace(&terminal.terminal_id, Some(keys.clone()));
        Ok(Some(keys))
    }

    fn import(&self, terminal: &TerminalRecord, record: &WorkingKeysRecord) -> Result<ActiveKeys, GatewayError> {
        let tmk = self.tmk(terminal)?;
        let sealed = SealedSecret::from_bytes(&record.keys_sealed).map_err(|e| GatewayError::Keys(e.to_string()))?;
        let field_62 = self
            .master_key
            .open(&sealed, &keys_context(&terminal.terminal_id))
            .map_err(|e| GatewayError::Keys(e.to_string()))?;
        let wrapped =
            WrappedWorkingKeys::from_slice(field_62.expose_secret()).map_err(|e| GatewayError::Keys(e.to_string()))?;
        let issued = self.security.import_working_keys(tmk, &wrapped)?;
        Ok(ActiveKeys { pin_key: issued.pin_key, mac_key: issued.mac_key, sealed: record.keys_sealed.clone() })
    }
}

/// Working keys issued in the security module but not stored yet.
struct UnstoredKeys<'a> {
    security: &'a dyn SecurityModule,
    keys: Option<[KeyHandle; 2]>,
}

impl UnstoredKeys<'_> {
    /// They were stored: they stay.
    fn keep(mut self) {
        self.keys = None;
    }
}

impl Drop for UnstoredKeys<'_> {
    fn drop(&mut self) {
        for key in self.keys.take().into_iter().flatten() {
            let _ = self.security.remove_key(key);
        }
    }
}
