# The audit log.
audit-title = Audit log
audit-chain-ok-badge = Chain intact
audit-chain-ok = { $n ->
    [one] The hash chain is verified up to record 1.
   *[other] The hash chain is verified up to record { $n }.
}
audit-chain-broken-badge = Chain broken
audit-chain-broken = The hash chain is broken at record { $seq }: that record or one before it was changed or removed. Stop and restore the latest verified backup.
audit-actor = Actor
audit-action = Action
audit-subject = Subject
audit-date = Day (UTC)
audit-filter = Filter
audit-none = No record matches.
audit-at = Time
audit-source = Source
audit-reason = Reason
audit-details = Details
audit-show = Show
audit-older = Older records
audit-bad-date = Enter the day as YYYY-MM-DD.
audit-filter-too-long = A filter is longer than 128 characters.
