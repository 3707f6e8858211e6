//! The contacts the gateway hears (sign-in 0800 `003`, echo test 0820 `301`) for the back
//! office's fleet page: kept in a bounded map, latest per terminal, and written every
//! [`CONTACTS_FLUSH_INTERVAL_MS`] as ONE write unit. So an echo costs no commit of its own, a
//! sign-in no more than its working keys, and the card path nothing at all. The price: a
//! contact reaches the fleet page up to an interval late, and the contacts of the last interval
//! before the process stops are written on a graceful stop only.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use kassa_store::fleet::{record_contact, Contact};
use kassa_store::{Store, WriteUnit};

/// How often the heard contacts are written.
pub(crate) const CONTACTS_FLUSH_INTERVAL_MS: u64 = 2_000;

/// Terminals whose contacts wait for one write. A terminal signs in once a day and echoes every
/// few minutes, so an interval hears far fewer terminals than this; beyond it a terminal not
/// already waiting is left out of this interval (counted, and logged at the next write) and
/// shows at its next contact. About 150 bytes each: at most a couple of MiB.
pub(crate) const CONTACTS_PENDING_MAX: usize = 10_000;

/// What waits to be written for one terminal.
#[derive(Debug)]
struct Heard {
    /// Its latest contact.
    latest: Contact,
    /// Its latest echo when a later sign-in is `latest`: written first, so the fleet's echo
    /// health does not lose it.
    echo: Option<Contact>,
}

#[derive(Debug, Default)]
struct Pending {
    by_terminal: HashMap<String, Heard>,
    /// Contacts left out since the last write (the map was full).
    dropped: u64,
}

/// The contacts heard since the last write.
#[derive(Debug, Default)]
pub(crate) struct Contacts {
    pending: Mutex<Pending>,
}

/// The fleet's name of a network management code (60.3), `None` for what is no contact of its
/// own (sign-out ends a session; codes outside the table are refused).
pub(crate) fn contact_kind(mti_class: &str, network_code: &[u8; 3]) -> Option<&'static str> {
    match (mti_class, network_code) {
        ("0800", b"003") => Some("sign_in"),
        ("0820", b"301") => Some("echo"),
        _ => None,
    }
}

impl Contacts {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers `contact` until the next write; an older one never replaces a newer.
    pub(crate) fn heard(&self, contact: Contact) {
        let mut pending = self.lock();
        let full = pending.by_terminal.len() >= CONTACTS_PENDING_MAX;
        match pending.by_terminal.get_mut(&contact.terminal_id) {
            Some(heard) => merge(heard, contact),
            None if full => pending.dropped += 1,
            None => {
                let terminal_id = contact.terminal_id.clone();
                pending.by_terminal.insert(terminal_id, Heard { latest: contact, echo: None });
            }
        }
    }

    /// Writes what was heard since the last write, as one unit; on failure it is kept for the
    /// next write (each contact is an upsert where the newer wins, so a commit whose outcome is
    /// unknown may be written again).
    pub(crate) async fn flush(&self, store: &Store) {
        let (heard, dropped) = {
            let mut pending = self.lock();
            (std::mem::take(&mut pending.by_terminal), std::mem::take(&mut pending.dropped))
        };
        if dropped > 0 {
            tracing::warn!(
                dropped,
                terminals_max = CONTACTS_PENDING_MAX,
                "terminal contacts left out: too many at once"
            );
        }
        if heard.is_empty() {
            return;
        }
        let contacts: Vec<Contact> =
            heard.into_values().flat_map(|heard| heard.echo.into_iter().chain([heard.latest])).collect();
        let ops = contacts.iter().map(record_contact).collect();
        if let Err(error) = store.commit(WriteUnit::ops(ops)).await {
            tracing::warn!(%error, contacts = contacts.len(), "terminal contacts not written; retried at the next write");
            for contact in contacts {
                self.heard(contact);
            }
        }
    }
}

fn merge(heard: &mut Heard, contact: Contact) {
    let is_echo = contact.kind == "echo";
    if contact.at_ms >= heard.latest.at_ms {
        let previous = std::mem::replace(&mut heard.latest, contact);
        if is_echo {
            heard.echo = None;
        } else if previous.kind == "echo" {
            heard.echo = Some(previous);
        }
    } else if is_echo && heard.echo.as_ref().is_none_or(|echo| echo.at_ms < contact.at_ms) {
        heard.echo = Some(contact);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(terminal_id: &str, kind: &'static str, at_ms: i64) -> Contact {
        Contact {
            terminal_id: terminal_id.into(),
            at_ms,
            kind,
            software_version: None,
            parameters_version: None,
            unsent_offline: None,
            unsent_reversals: None,
        }
    }

    fn waiting(contacts: &Contacts, terminal_id: &str) -> (i64, &'static str, Option<i64>) {
        let pending = contacts.lock();
        let heard = &pending.by_terminal[terminal_id];
        (heard.latest.at_ms, heard.latest.kind, heard.echo.as_ref().map(|echo| echo.at_ms))
    }

    #[test]
    fn the_latest_contact_wins_and_an_earlier_echo_is_kept_for_the_echo_health() {
        let contacts = Contacts::default();
        contacts.heard(contact("10000001", "echo", 10));
        contacts.heard(contact("10000001", "sign_in", 20));
        assert_eq!(waiting(&contacts, "10000001"), (20, "sign_in", Some(10)));
        // Late arrivals never replace newer facts.
        contacts.heard(contact("10000001", "echo", 5));
        contacts.heard(contact("10000001", "sign_in", 15));
        assert_eq!(waiting(&contacts, "10000001"), (20, "sign_in", Some(10)));
        // A newer echo is the latest contact and the only echo.
        contacts.heard(contact("10000001", "echo", 30));
        assert_eq!(waiting(&contacts, "10000001"), (30, "echo", None));
    }

    #[test]
    fn the_map_is_bounded_but_waiting_terminals_still_update() {
        let contacts = Contacts::default();
        for n in 0..CONTACTS_PENDING_MAX {
            contacts.heard(contact(&format!("{n:08}"), "echo", 1));
        }
        contacts.heard(contact("new", "echo", 2));
        contacts.heard(contact("00000000", "sign_in", 3));
        let pending = contacts.lock();
        assert_eq!((pending.by_terminal.len(), pending.dropped), (CONTACTS_PENDING_MAX, 1));
        assert_eq!(pending.by_terminal["00000000"].latest.kind, "sign_in");
    }

    #[test]
    fn only_sign_in_and_echo_are_contacts() {
        assert_eq!(contact_kind("0800", b"003"), Some("sign_in"));
        assert_eq!(contact_kind("0820", b"301"), Some("echo"));
        assert_eq!(contact_kind("0820", b"002"), None);
        assert_eq!(contact_kind("0800", b"301"), None);
    }
}
