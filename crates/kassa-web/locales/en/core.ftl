# The layout, sign-in, password change and errors.
brand-subtitle = Back office
skip-to-content = Skip to content
nav-label = Main
nav-password = Change password
nav-sign-out = Sign out
lang-switch = 中文
footer-note = amounts in the merchant's currency; times in UTC unless stated

role-institution-admin = Institution admin
role-institution-reviewer = Institution reviewer
role-merchant-owner = Merchant owner
role-merchant-staff = Merchant staff

nav-dashboard = Dashboard
nav-transactions = Transactions
nav-refunds = Refunds
nav-recon = Reconciliation
nav-corrections = Corrections
nav-payouts = Payouts
nav-merchants = Merchants
nav-terminals = Terminals
nav-operators = Operators
nav-settings = Settings
nav-api-keys = API keys
nav-test-transaction = Test transaction
nav-deposits = Deposits
nav-audit = Audit log
nav-backups = Backups

login-title = Sign in
login-username = Username
login-password = Password
login-submit = Sign in
login-forgot = Forgot your password?
login-ended = Your session ended. Sign in again.

password-title = Change password
password-forced = You must change your password before you continue (it is an initial or reset password, or it expired).
password-old = Current password
password-new = New password
password-confirm = New password again
password-submit = Change password
password-rules = At least { $min } characters with letters and digits; not one of your last { $history } passwords.
password-mismatch = The two new passwords differ.
done-password-changed = Your password was changed.

dashboard-title = Dashboard
dashboard-intro = Volume, success rate and pending items of the platform.

auth-wrong-credentials = Wrong username or password.
auth-wrong-credentials-left = Wrong username or password. { $left ->
    [one] One more failure locks the account.
   *[other] { $left } more failures lock the account.
}
auth-wrong-secret = Wrong { $what }.
auth-wrong-secret-left = Wrong { $what }; { $left } tries left before it locks.
auth-locked = Locked after too many failed attempts until { $until }. Try again then, or ask an administrator to unlock it.
auth-disabled = This account is disabled.
auth-policy = The new password is refused: { $rules }.
auth-rate-limited = Too many attempts; try again in a minute.
auth-busy = The service is busy; try again in a moment.

error-forbidden = Your role may not open this page or do this.
error-not-found = Not found.
error-bad = The request is not valid.
error-refused = Refused
error-internal = Something went wrong on our side; it was logged. Try again later.
error-csrf = The form expired
error-csrf-detail = The form was too old or came from another site. Go back, reload the page and send it again.
error-home = Back to the dashboard
error-form = A field of the form is missing or not valid.
error-not-a-form = Send the form from the page.
error-form-too-large = The form is too large.
error-text-too-long = A text is longer than 500 characters.
