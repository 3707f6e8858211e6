# 布局、登录、修改密码与错误。
brand-subtitle = 管理后台
skip-to-content = 跳到正文
nav-label = 主菜单
nav-password = 修改密码
nav-sign-out = 退出登录
lang-switch = English
footer-note = 金额以商户币种计；时间如无说明均为 UTC

role-institution-admin = 机构管理员
role-institution-reviewer = 机构审核员
role-merchant-owner = 商户负责人
role-merchant-staff = 商户员工

nav-dashboard = 概览
nav-transactions = 交易查询
nav-refunds = 退款
nav-recon = 对账
nav-corrections = 补登
nav-payouts = 结算出款
nav-merchants = 商户
nav-terminals = 终端
nav-operators = 操作员
nav-settings = 设置
nav-api-keys = API 密钥
nav-test-transaction = 模拟交易
nav-deposits = 押金
nav-audit = 审计日志
nav-backups = 备份

login-title = 登录
login-username = 用户名
login-password = 密码
login-submit = 登录
login-forgot = 忘记密码？
login-ended = 会话已结束，请重新登录。

password-title = 修改密码
password-forced = 继续之前必须修改密码（初始密码、重置后的密码或已过期的密码）。
password-old = 当前密码
password-new = 新密码
password-confirm = 再次输入新密码
password-submit = 修改密码
password-rules = 至少 { $min } 个字符，须含字母和数字；不得与最近 { $history } 次密码相同。
password-mismatch = 两次输入的新密码不一致。
done-password-changed = 密码已修改。

dashboard-title = 概览
dashboard-intro = 平台的交易量、成功率与待处理事项。

auth-wrong-credentials = 用户名或密码错误。
auth-wrong-credentials-left = 用户名或密码错误。再失败 { $left } 次账户将被锁定。
auth-wrong-secret = { $what }错误。
auth-wrong-secret-left = { $what }错误；再错 { $left } 次将被锁定。
auth-locked = 连续失败次数过多，已锁定至 { $until }。届时再试，或请管理员解锁。
auth-disabled = 该账户已停用。
auth-policy = 新密码不符合规则：{ $rules }。
auth-rate-limited = 尝试次数过多，请一分钟后再试。
auth-busy = 服务繁忙，请稍后再试。

error-forbidden = 您的角色无权打开此页面或执行此操作。
error-not-found = 未找到。
error-bad = 请求无效。
error-refused = 已拒绝
error-internal = 系统内部出错，已记录。请稍后再试。
error-csrf = 表单已过期
error-csrf-detail = 表单过旧或来自其他网站。请返回、刷新页面后重新提交。
error-home = 返回概览
error-form = 表单缺少字段或字段无效。
error-not-a-form = 请从页面提交表单。
error-form-too-large = 表单过大。
error-text-too-long = 文字超过 500 个字符。
