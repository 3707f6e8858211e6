//! A wallet in memory with its own books, and faults to inject: an answer lost after the call
//! was carried out, an unknown answer before anything happened, a stale query, a dropped
//! notification, a slow answer.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use kassa_domain::{Currency, Money};
use kassa_wallet::{
    CancelOutcome, Decline, NotificationError, PayOutcome, PayRequest, PrecreateRequest, RefundRequest, TradeState,
    Wallet, WalletConnector, WalletError, WalletNotification, WalletRefund, WalletTrade,
};

/// What the payer does with a customer code (by its last two digits, as the simulator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payer {
    Pays,
    ConfirmsAfter(u32),
    NeverConfirms,
}

#[derive(Debug, Clone)]
pub struct FakeTrade {
    pub amount: Money,
    pub state: TradeState,
    pub previous: TradeState,
    pub trade_no: String,
    payer: Payer,
    queries: u32,
    /// Everything ever paid on it and refunded (a cancel of a paid trade refunds in full).
    pub paid_minor: i64,
    pub refunded_minor: i64,
}

#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// The next calls (any method) are carried out, then answer Unknown.
    pub lose_answer: u32,
    /// The next calls answer Unknown and do nothing.
    pub error: u32,
    /// The next queries answer the state before the last change.
    pub stale_query: u32,
    /// The next notifications are not produced.
    pub drop_notification: u32,
    /// Every answer comes after this long.
    pub slow_ms: u64,
    /// The next payments are not sent (`NotSent`): nothing reaches the wallet.
    pub not_sent: u32,
    /// The next refunds are declined with the wallet's code `ACQ.SELLER_BALANCE_NOT_ENOUGH`.
    pub decline_refund: u32,
}

#[derive(Debug, Default)]
struct Books {
    trades: BTreeMap<String, FakeTrade>,
    /// Precreated orders the payer has not scanned yet (Alipay-style: unknown to queries and
    /// closes until then, still payable).
    unscanned: BTreeMap<String, FakeTrade>,
    /// Whether precreated orders exist only once the payer scans them (as at Alipay).
    precreate_on_scan: bool,
    refunds: BTreeMap<String, (String, Money)>,
    next_no: u64,
    faults: Faults,
}

#[derive(Debug)]
pub struct FakeWallet {
    wallet: Wallet,
    books: Mutex<Books>,
}

fn cny(minor: i64) -> Money {
    Money::from_minor(minor, Currency::CNY)
}

impl FakeWallet {
    pub fn new(wallet: Wallet) -> FakeWallet {
        FakeWallet { wallet, books: Mutex::new(Books::default()) }
    }

    pub fn faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.books.lock().unwrap().faults);
    }

    /// Behave as Alipay does with a precreated code: the order exists (for queries, closes
    /// and cancels: `TradeNotFound` until then) only once the payer scans the code, and the
    /// code stays payable whatever Kassa asked meanwhile.
    pub fn precreate_on_scan(&self) {
        self.books.lock().unwrap().precreate_on_scan = true;
    }

    /// The payer scans the wallet's own code of a precreated order.
    pub fn payer_scans(&self, reference: &str) {
        let mut books = self.books.lock().unwrap();
        if let Some(trade) = books.unscanned.remove(reference) {
            books.trades.insert(reference.to_owned(), trade);
        }
    }

    pub fn trade(&self, reference: &str) -> Option<FakeTrade> {
        self.books.lock().unwrap().trades.get(reference).cloned()
    }

    pub fn trades(&self) -> BTreeMap<String, FakeTrade> {
        self.books.lock().unwrap().trades.clone()
    }

    /// The payer pays a waiting order (opened the wallet's code and confirmed); answers the
    /// notification body the wallet would send, unless it is dropped.
    pub fn payer_pays(&self, reference: &str) -> Option<Vec<u8>> {
        self.payer_scans(reference);
        let mut books = self.books.lock().unwrap();
        let trade = books.trades.get_mut(reference)?;
        if trade.state != TradeState::Waiting {
            return None;
        }
        trade.previous = trade.state;
        trade.state = TradeState::Paid;
        trade.paid_minor = trade.amount.minor();
        let amount = trade.amount.minor();
        if books.faults.drop_notification > 0 {
            books.faults.drop_notification -= 1;
            return None;
        }
        Some(notification_body(reference, amount, "ok"))
    }

    /// Before a call: the injected delay, and whether the call is refused unknown (nothing
    /// done) or its answer lost (done, then unknown).
    async fn before(&self) -> (bool, bool) {
        let slow = self.books.lock().unwrap().faults.slow_ms;
        if slow > 0 {
            tokio::time::sleep(Duration::from_millis(slow)).await;
        }
        let mut books = self.books.lock().unwrap();
        if books.faults.error > 0 {
            books.faults.error -= 1;
            return (true, false);
        }
        if books.faults.lose_answer > 0 {
            books.faults.lose_answer -= 1;
            return (false, true);
        }
        (false, false)
    }

    fn take_not_sent(&self) -> bool {
        let mut books = self.books.lock().unwrap();
        let not_sent = books.faults.not_sent > 0;
        if not_sent {
            books.faults.not_sent -= 1;
        }
        not_sent
    }

    fn snapshot(&self, reference: &str, trade: &FakeTrade, state: TradeState) -> WalletTrade {
        WalletTrade {
            reference: reference.to_owned(),
            trade_no: (state == TradeState::Paid || trade.paid_minor > 0).then(|| trade.trade_no.clone()),
            state,
            amount: trade.amount,
            paid_at_ms: (state == TradeState::Paid).then_some(1),
        }
    }
}

pub fn notification_body(reference: &str, amount_minor: i64, signature: &str) -> Vec<u8> {
    serde_json::json!({ "reference": reference, "amount_minor": amount_minor, "sig": signature })
        .to_string()
        .into_bytes()
}

fn unknown() -> WalletError {
    WalletError::Unknown("fault".into())
}

#[async_trait]
impl WalletConnector for FakeWallet {
    fn wallet(&self) -> Wallet {
        self.wallet
    }

    async fn pay(&self, request: &PayRequest) -> Result<PayOutcome, WalletError> {
        let (refused, lost) = self.before().await;
        if refused {
            return Err(unknown());
        }
        if self.take_not_sent() {
            return Err(WalletError::NotSent("fault".into()));
        }
        let code = request.code.expose();
        let payer = match &code[16..] {
            "01" => Payer::Pays,
            "02" => Payer::ConfirmsAfter(2),
            "03" => return Err(WalletError::Declined(Decline::BalanceNotEnough)),
            "04" => Payer::NeverConfirms,
            _ => return Err(WalletError::Declined(Decline::CodeInvalid)),
        };
        let mut books = self.books.lock().unwrap();
        if books.trades.contains_key(&request.reference) {
            return Err(WalletError::Declined(Decline::TradeStatus));
        }
        books.next_no += 1;
        let paid = payer == Payer::Pays;
        let state = if paid { TradeState::Paid } else { TradeState::Waiting };
        let trade = FakeTrade {
            amount: request.amount,
            state,
            previous: TradeState::Waiting,
            trade_no: format!("{}{:08}", self.wallet.as_str(), books.next_no),
            payer,
            queries: 0,
            paid_minor: if paid { request.amount.minor() } else { 0 },
            refunded_minor: 0,
        };
        let answer = self.snapshot(&request.reference, &trade, state);
        books.trades.insert(request.reference.clone(), trade);
        if lost {
            return Err(unknown());
        }
        Ok(if paid { PayOutcome::Paid(answer) } else { PayOutcome::Waiting(answer) })
    }

    async fn precreate(&self, request: &PrecreateRequest) -> Result<String, WalletError> {
        let (refused, lost) = self.before().await;
        if refused {
            return Err(unknown());
        }
        let mut books = self.books.lock().unwrap();
        books.next_no += 1;
        let next_no = books.next_no;
        let known = books.trades.contains_key(&request.reference);
        let orders = if books.precreate_on_scan && !known { &mut books.unscanned } else { &mut books.trades };
        orders.entry(request.reference.clone()).or_insert_with(|| FakeTrade {
            amount: request.amount,
            state: TradeState::Waiting,
            previous: TradeState::Waiting,
            trade_no: format!("{}{:08}", self.wallet.as_str(), next_no),
            payer: Payer::NeverConfirms,
            queries: 0,
            paid_minor: 0,
            refunded_minor: 0,
        });
        if lost {
            return Err(unknown());
        }
        Ok(format!("fake://{}/{}", self.wallet.as_str(), request.reference))
    }

    async fn query(&self, reference: &str) -> Result<WalletTrade, WalletError> {
        let (refused, lost) = self.before().await;
        if refused {
            return Err(unknown());
        }
        let mut books = self.books.lock().unwrap();
        let stale = books.faults.stale_query > 0;
        if stale {
            books.faults.stale_query -= 1;
        }
        let Some(trade) = books.trades.get_mut(reference) else {
            return Err(WalletError::Declined(Decline::TradeNotFound));
        };
        trade.queries += 1;
        if let Payer::ConfirmsAfter(n) = trade.payer {
            if trade.state == TradeState::Waiting && trade.queries >= n {
                trade.previous = trade.state;
                trade.state = TradeState::Paid;
                trade.paid_minor = trade.amount.minor();
            }
        }
        let state = if stale { trade.previous } else { trade.state };
        let answer = self.snapshot(reference, trade, state);
        if lost {
            return Err(unknown());
        }
        Ok(answer)
    }

    async fn cancel(&self, reference: &str) -> Result<CancelOutcome, WalletError> {
        let (refused, lost) = self.before().await;
        if refused {
            return Err(unknown());
        }
        let mut books = self.books.lock().unwrap();
        let Some(trade) = books.trades.get_mut(reference) else {
            return Err(WalletError::Declined(Decline::TradeNotFound));
        };
        let outcome = match trade.state {
            TradeState::Paid => {
                trade.refunded_minor = trade.paid_minor;
                CancelOutcome::Refunded
            }
            _ if trade.paid_minor > 0 => CancelOutcome::Refunded,
            _ => CancelOutcome::Closed,
        };
        trade.previous = trade.state;
        trade.state = TradeState::Closed;
        if lost {
            return Err(unknown());
        }
        Ok(outcome)
    }

    async fn close(&self, reference: &str) -> Result<(), WalletError> {
        let (refused, lost) = self.before().await;
        if refused {
            return Err(unknown());
        }
        let mut books = self.books.lock().unwrap();
        let Some(trade) = books.trades.get_mut(reference) else {
            return Err(WalletError::Declined(Decline::TradeNotFound));
        };
        match trade.state {
            TradeState::Paid => return Err(WalletError::Declined(Decline::TradeAlreadyPaid)),
            TradeState::Waiting => {
                trade.previous = trade.state;
                trade.state = TradeState::Closed;
            }
            TradeState::Closed => {}
        }
        if lost {
            return Err(unknown());
        }
        Ok(())
    }

    async fn refund(&self, request: &RefundRequest) -> Result<WalletRefund, WalletError> {
        let (refused, lost) = self.before().await;
        if refused {
            return Err(unknown());
        }
        let mut books = self.books.lock().unwrap();
        if books.faults.decline_refund > 0 {
            books.faults.decline_refund -= 1;
            let code = "ACQ.SELLER_BALANCE_NOT_ENOUGH".to_owned();
            return Err(WalletError::Declined(Decline::Other { code, message: "seller balance".into() }));
        }
        if let Some((reference, amount)) = books.refunds.get(&request.refund_reference).cloned() {
            let total = books.trades.get(&reference).map(|t| cny(t.refunded_minor));
            return Ok(WalletRefund {
                reference,
                refund_reference: request.refund_reference.clone(),
                amount,
                refunded_total: total,
            });
        }
        let Some(trade) = books.trades.get_mut(&request.reference) else {
            return Err(WalletError::Declined(Decline::TradeNotFound));
        };
        if trade.state != TradeState::Paid {
            return Err(WalletError::Declined(Decline::TradeStatus));
        }
        if trade.refunded_minor + request.amount.minor() > trade.paid_minor {
            return Err(WalletError::Declined(Decline::RefundTooLarge));
        }
        trade.refunded_minor += request.amount.minor();
        let total = cny(trade.refunded_minor);
        books.refunds.insert(request.refund_reference.clone(), (request.reference.clone(), request.amount));
        if lost {
            return Err(unknown());
        }
        Ok(WalletRefund {
            reference: request.reference.clone(),
            refund_reference: request.refund_reference.clone(),
            amount: request.amount,
            refunded_total: Some(total),
        })
    }

    async fn refund_query(&self, reference: &str, refund_reference: &str) -> Result<WalletRefund, WalletError> {
        let (refused, lost) = self.before().await;
        if refused || lost {
            return Err(unknown());
        }
        let books = self.books.lock().unwrap();
        match books.refunds.get(refund_reference) {
            Some((of, amount)) if of == reference => Ok(WalletRefund {
                reference: reference.to_owned(),
                refund_reference: refund_reference.to_owned(),
                amount: *amount,
                refunded_total: None,
            }),
            _ => Err(WalletError::Declined(Decline::TradeNotFound)),
        }
    }

    async fn statement_to_file(&self, _date: &str, _bytes_max: u64, _file: &std::fs::File) -> Result<u64, WalletError> {
        Ok(0)
    }

    fn verify_notification(&self, _content_type: &str, body: &[u8]) -> Result<WalletNotification, NotificationError> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| NotificationError::Malformed(e.to_string()))?;
        if value["sig"] != "ok" {
            return Err(NotificationError::BadSignature);
        }
        let reference = value["reference"].as_str().ok_or(NotificationError::Malformed("reference".into()))?;
        let amount = value["amount_minor"].as_i64().ok_or(NotificationError::Malformed("amount".into()))?;
        let trade_no = self.trade(reference).map(|t| t.trade_no);
        Ok(WalletNotification {
            notify_id: format!("n-{reference}"),
            trade: WalletTrade {
                reference: reference.to_owned(),
                trade_no,
                state: TradeState::Paid,
                amount: cny(amount),
                paid_at_ms: Some(1),
            },
        })
    }

    fn notification_answer(&self, accepted: bool) -> (&'static str, Vec<u8>) {
        ("text/plain", if accepted { b"success".to_vec() } else { b"fail".to_vec() })
    }
}
