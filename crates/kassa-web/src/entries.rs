//! Journal entries as every page shows them (a transaction's detail, a test transaction's
//! result, an approved correction): one view, [`EntryView`], made by [`entry_view`], and one
//! template partial, `templates/entries.html`, which a page includes inside its own
//! `{% for entry in entries %}`.

use kassa_store::{Store, StoreError, StoredEntry};

use crate::format::{money, word, Words};
use crate::i18n::Lang;
use crate::page::format_time_ms;

/// A posting: a debit or a credit, each a positive amount in its own column (the other empty).
#[derive(Debug)]
pub struct PostingView {
    /// The ledger account.
    pub account: String,
    /// The amount debited, or empty.
    pub debit: String,
    /// The amount credited, or empty.
    pub credit: String,
}

/// A journal entry, in words.
#[derive(Debug)]
pub struct EntryView {
    /// The entry's id.
    pub id: i64,
    /// Its kind in the page's language.
    pub kind: String,
    /// The reference it was posted under.
    pub reference: String,
    /// When it was posted.
    pub time: String,
    /// Its postings.
    pub postings: Vec<PostingView>,
    /// Whether its postings sum to zero (read back, not assumed).
    pub balanced: bool,
}

/// `entry` in words; amounts in `currency`.
pub fn entry_view(lang: Lang, entry: &StoredEntry, currency: &str) -> EntryView {
    let balanced = entry.postings.iter().try_fold(0_i64, |sum, (_, minor)| sum.checked_add(*minor)) == Some(0);
    EntryView {
        id: entry.id,
        kind: word(lang, Words::EntryKind, &entry.kind),
        reference: entry.reference.clone(),
        time: format_time_ms(entry.created_at_ms),
        postings: entry
            .postings
            .iter()
            .map(|(account, minor)| {
                let amount = money(minor.saturating_abs(), currency);
                let (debit, credit) = if *minor > 0 { (amount, String::new()) } else { (String::new(), amount) };
                PostingView { account: account.clone(), debit, credit }
            })
            .collect(),
        balanced,
    }
}

/// The entries posted under `references` or for the transactions `txn_ids` (a card capture's
/// entry is found by its transaction, not its reference), oldest first, at most `max`.
pub async fn entries_about(
    store: &Store,
    references: &[String],
    txn_ids: &[i64],
    max: usize,
) -> Result<Vec<StoredEntry>, StoreError> {
    let mut entries = Vec::new();
    for reference in references {
        entries.extend(store.ledger.entries_for(reference).await?);
    }
    for txn_id in txn_ids {
        entries.extend(store.ledger.entries_of_txn(*txn_id).await?);
    }
    entries.sort_by_key(|entry| entry.id);
    entries.dedup_by_key(|entry| entry.id);
    entries.truncate(max);
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debits_and_credits_go_to_their_columns_and_the_sum_is_checked() {
        let entry = StoredEntry {
            id: 7,
            kind: "sale".into(),
            reference: "card:1".into(),
            txn_id: None,
            created_at_ms: 0,
            postings: vec![("a".into(), 1250), ("b".into(), -1250)],
        };
        let view = entry_view(Lang::En, &entry, "CNY");
        assert!(view.balanced);
        assert_eq!((view.postings[0].debit.is_empty(), view.postings[0].credit.is_empty()), (false, true));
        assert_eq!((view.postings[1].debit.is_empty(), view.postings[1].credit.is_empty()), (true, false));
        assert_eq!(view.postings[0].debit, view.postings[1].credit);
        let lopsided = StoredEntry { postings: vec![("a".into(), 1250), ("b".into(), -1000)], ..entry };
        assert!(!entry_view(Lang::En, &lopsided, "CNY").balanced);
    }
}
