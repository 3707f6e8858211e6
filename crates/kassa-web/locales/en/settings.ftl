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
settings-policy-view-only = Shown for information: the policy is a platform setting (PCI DSS v4 by default) and is not edited on this page.
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
