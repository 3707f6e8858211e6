//! Reconciliation (对账) and corrections (补登).
