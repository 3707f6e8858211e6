# Activation deposits (/deposits).
deposits-title = Deposits
deposits-intro = A terminal may carry an activation deposit, returned once the merchant's card and QR volume reaches the target within the period. Volume counts approved payments less refunds; test transactions do not count.
deposits-none = No deposits.
deposits-terminal = Terminal
deposits-merchant = Merchant
deposits-amount = Deposit
deposits-target = Target volume
deposits-days = Period (days)
deposits-progress = Volume so far / target
deposits-period = Period
deposits-state = State
deposits-action = Action
deposits-days-left = { $days ->
    [one] One day left
   *[other] { $days } days left
}
deposits-period-over = Period over
deposits-state-held = Held
deposits-state-reached = Target reached
deposits-state-missed = Target missed
deposits-state-returned = Returned { $at }
deposits-return = Return deposit
deposits-return-confirm = Return this deposit to the merchant? The refund is posted to the ledger and paid with the next payout.
deposits-set-title = Set a deposit on a terminal
deposits-set-hint = The deposit is taken from the merchant's next payout (a ledger entry) and the period starts now.
deposits-set = Set deposit
deposits-no-terminal = No such terminal.
deposits-bad-amount = Enter amounts greater than zero, like 999.00.
deposits-bad-days = Enter a period of 1 to 366 days.
deposits-exists = This terminal already has a deposit.
deposits-not-reached = The target is not reached yet.
done-deposit-set = The deposit was set and taken through the ledger.
done-deposit-returned = The deposit was returned through the ledger.
