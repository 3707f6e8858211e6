# 后台用户自助重置忘记的密码。
forgot-title = 忘记密码
forgot-intro = 请输入用户名。如果您的账户已登记接收一次性验证码的邮箱或手机号，我们会把验证码发到那里。
forgot-send = 发送验证码
forgot-no-contact = 没有登记邮箱或手机号？请联系管理员（或本商户的负责人）在“操作员管理”页面为您重置密码。
forgot-back = 返回登录
forgot-code-title = 输入一次性验证码
forgot-sent = 如果该账户存在且已登记邮箱或手机号，一次性验证码已发送到那里。有效期至 { $expires }，仅可使用一次。
forgot-for = 账户：{ $user }
forgot-code = 一次性验证码
forgot-submit = 设置新密码
forgot-again = 重新获取验证码
forgot-code-refused = 验证码错误、已使用或已过期。请核对，或重新获取验证码。
forgot-done-title = 密码已修改
forgot-done = 您的密码已修改，请用新密码登录；您的其他会话已结束。
forgot-sign-in = 登录
