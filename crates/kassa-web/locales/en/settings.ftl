# Settings: password policy, refund password, payment-code settings and password.
settings-title = Settings
settings-policy = Back-office password policy
settings-length-min = Minimum length
settings-history = Cannot reuse the last
settings-lockout = Lockout
settings-lockout-value = after { $failures } failed sign-ins, for { $minutes } minutes
settings-idle = Signed out when idle for
settings-age = Password expires after
settings-never = never
settings-minutes = { $n ->
    [one] 1 minute
   *[other] { $n } minutes
}
settings-days = { $n ->
    [one] 1 day
   *[other] { $n } days
}
settings-policy-view-only = Shown for information: the policy is a platform setting (PCI DSS v4 by default) that an institution admin changes.
settings-pick-merchant = Enter a merchant number to see its refund password and payment-code settings.
settings-of = Merchant { $merchant } · { $name }
settings-refund-password = Refund password
settings-refund-default = The refund password is still the default one. Change it: anyone who knows the default could refund your payments.
settings-refund-changed = Changed
settings-refund-none = This merchant has no refund password.
settings-current-refund = Current refund password
settings-new-refund = New refund password
settings-change-refund = Change refund password
settings-refund-institution = Only the merchant's owner changes the refund password here. A forgotten one is reset by the acquirer with a one-time code sent to the merchant's contact.
settings-code-rules = At least { $min } digits; not one of the last { $history }. Wrong current passwords count towards a lockout.
settings-paycode-password = Payment-code password
settings-paycode-password-set = Set
settings-paycode-password-unset = Not set
settings-current-paycode = Current payment-code password
settings-new-paycode = New payment-code password (6 digits)
settings-change-paycode = Change payment-code password
settings-set-paycode = Set payment-code password
settings-paycode-password-institution = Only the merchant's owner sets or changes it here (or the supervisor at a terminal). A forgotten one is reset by the acquirer.
settings-paycode = Payment-code settings
settings-paycode-version = Version { $version }, last changed { $updated }.
settings-never-changed = never (the defaults)
settings-qr-validity = QR code valid for (minutes, 1–120)
settings-qr-terminals = QR payments on each terminal
settings-qr-terminal = Terminal { $terminal } takes QR payments
settings-no-terminals = This merchant has no terminals yet.
settings-password-required = Ask for the payment-code password
settings-password-above = Only above this amount ({ $currency })
settings-password-above-hint = 0 means every payment asks for it.
settings-password-refunds = Ask for it for QR refunds too
settings-save-paycode = Save payment-code settings
settings-bad-validity = The QR validity is a whole number of minutes from 1 to 120.
settings-bad-amount = The amount is a decimal such as 500.00 in { $currency }.
done-settings-refund-password = The refund password was changed.
done-settings-paycode = The payment-code settings were saved; terminals pick them up at their next contact.
done-settings-paycode-password = The payment-code password was saved.
settings-policy-hint = Applies from the next sign-in and password change, without a restart; passwords already set are checked against a new minimum when they next change. PCI DSS v4 asks for at least 12 characters, a lockout after at most 10 failures for at least 30 minutes, and sign-out after at most 15 idle minutes.
settings-policy-length-min = Minimum length ({ $min }–{ $max } characters)
settings-policy-history = Earlier passwords that cannot be reused ({ $min }–{ $max })
settings-policy-age = Days before a password expires ({ $min } = never, up to { $max })
settings-policy-lockout-failures = Failed sign-ins in a row that lock the account ({ $min }–{ $max })
settings-policy-lockout-minutes = Minutes an account stays locked ({ $min }–{ $max })
settings-policy-idle = Idle minutes before sign-out ({ $min }–{ $max })
settings-policy-symbol = Also require a symbol (a character that is neither letter nor digit)
settings-policy-save = Save password policy
settings-policy-bad = Out of bounds or not a whole number: { $fields }.
done-settings-policy = The password policy was saved; it applies from the next sign-in and password change.
