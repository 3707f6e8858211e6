# The forgotten back-office password, reset by its user.
forgot-title = Forgotten password
forgot-intro = Enter your username. If your account has an e-mail address or a mobile number on file for one-time codes, we send a code there.
forgot-send = Send me a code
forgot-no-contact = No e-mail or mobile number on file? Ask your administrator (or your merchant's owner) to reset your password on the Operators page.
forgot-back = Back to sign-in
forgot-code-title = Enter the one-time code
forgot-sent = If the account exists and has an e-mail address or a mobile number on file, a one-time code was sent to it. It is valid until { $expires } and works once.
forgot-for = Account: { $user }
forgot-code = One-time code
forgot-submit = Set new password
forgot-again = Ask for a new code
forgot-code-refused = The code is wrong, used or expired. Check it, or ask for a new code.
forgot-done-title = Password changed
forgot-done = Your password was changed. Sign in with it now; your other sessions were ended.
forgot-sign-in = Sign in
