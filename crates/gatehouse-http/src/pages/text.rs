//! The pages' own words in every supported language. Error messages come from the
//! message-code catalog; this table holds only labels, titles and notices.

use gatehouse_domain::Locale;

macro_rules! texts {
    ($( $key:ident => $en:literal, $zh:literal, $vi:literal; )*) => {
        /// A piece of page text.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum T { $( $key, )* }

        impl T {
            /// The text in `locale`.
            pub fn get(self, locale: Locale) -> &'static str {
                match (self, locale) {
                    $(
                        (T::$key, Locale::En) => $en,
                        (T::$key, Locale::ZhCn) => $zh,
                        (T::$key, Locale::Vi) => $vi,
                    )*
                }
            }
        }

        #[cfg(test)]
        const ALL: &[T] = &[ $( T::$key, )* ];
    };
}

texts! {
    SignInTitle => "Sign in", "登录", "Đăng nhập";
    SignInLead => "Sign in with your email or username.", "使用邮箱或用户名登录。", "Đăng nhập bằng email hoặc tên người dùng.";
    Identifier => "Email or username", "邮箱或用户名", "Email hoặc tên người dùng";
    Password => "Password", "密码", "Mật khẩu";
    SignInButton => "Sign in", "登录", "Đăng nhập";
    SignInWith => "Sign in with {}", "使用 {} 登录", "Đăng nhập bằng {}";
    OrUseProvider => "Or sign in with your organisation's account:", "或使用所在组织的账户登录：", "Hoặc đăng nhập bằng tài khoản của tổ chức:";
    LinkedProviders => "Sign-in providers", "登录方式", "Nhà cung cấp đăng nhập";
    LinkProvider => "Link {}", "关联 {}", "Liên kết {}";
    ProviderLinked => "The provider was linked to your account.", "身份提供方已关联到您的账户。", "Đã liên kết nhà cung cấp với tài khoản của bạn.";
    ProviderUnlinked => "The provider was unlinked from your account.", "已解除该身份提供方与您账户的关联。", "Đã hủy liên kết nhà cung cấp khỏi tài khoản của bạn.";
    Unlink => "Unlink", "解除关联", "Hủy liên kết";
    StepTitle => "Choose a new password", "设置新密码", "Đặt mật khẩu mới";
    StepLead => "You must choose a new password before you continue.", "继续之前，您需要设置一个新密码。", "Bạn cần đặt mật khẩu mới trước khi tiếp tục.";
    CurrentPassword => "Current password", "当前密码", "Mật khẩu hiện tại";
    NewPassword => "New password", "新密码", "Mật khẩu mới";
    ConfirmPassword => "Confirm new password", "确认新密码", "Xác nhận mật khẩu mới";
    Continue => "Continue", "继续", "Tiếp tục";
    AccountTitle => "Your account", "我的账户", "Tài khoản của bạn";
    Email => "Email", "邮箱", "Email";
    Username => "Username", "用户名", "Tên người dùng";
    DisplayName => "Display name", "显示名称", "Tên hiển thị";
    Roles => "Roles", "角色", "Vai trò";
    LastLogin => "Last sign-in", "上次登录", "Lần đăng nhập gần nhất";
    Never => "Never", "从未", "Chưa bao giờ";
    Sessions => "Active sessions", "活动会话", "Phiên đang hoạt động";
    Started => "Started", "开始时间", "Bắt đầu";
    LastSeen => "Last seen", "最近活动", "Hoạt động gần nhất";
    IpAddress => "IP address", "IP 地址", "Địa chỉ IP";
    Device => "Device", "设备", "Thiết bị";
    ThisBrowser => "This browser", "当前浏览器", "Trình duyệt này";
    Revoke => "Revoke", "撤销", "Thu hồi";
    Unknown => "Unknown", "未知", "Không rõ";
    ChangePassword => "Change password", "修改密码", "Đổi mật khẩu";
    SignOut => "Sign out", "退出登录", "Đăng xuất";
    PasswordChanged => "Your password was changed. Your other sessions were signed out.", "密码已修改，其他会话已退出登录。", "Đã đổi mật khẩu. Các phiên khác đã bị đăng xuất.";
    SessionRevoked => "The session was revoked.", "会话已撤销。", "Đã thu hồi phiên.";
    WrongCurrentPassword => "The current password is incorrect", "当前密码错误", "Mật khẩu hiện tại không đúng";
    Mismatch => "The passwords do not match", "两次输入的密码不一致", "Mật khẩu nhập lại không khớp";
    BadForm => "The form could not be read. Please try again.", "无法读取表单，请重试。", "Không đọc được biểu mẫu. Vui lòng thử lại.";
    ErrorTitle => "Request refused", "请求被拒绝", "Yêu cầu bị từ chối";
    BackToAccount => "Back to your account", "返回我的账户", "Quay lại tài khoản";
    BackToSignIn => "Back to sign-in", "返回登录", "Quay lại đăng nhập";
    TotpTitle => "Two-factor authentication", "两步验证", "Xác thực hai bước";
    TotpLead => "Enter the 6-digit code from your authenticator app.", "请输入身份验证器应用中的 6 位验证码。", "Nhập mã 6 chữ số từ ứng dụng xác thực.";
    Code => "Code", "验证码", "Mã";
    TrustBrowser => "Trust this browser (skip the code here next time)", "信任此浏览器（下次在此无需验证码）", "Tin cậy trình duyệt này (lần sau không cần mã)";
    UseRecoveryCode => "Lost your device? Use a recovery code instead.", "设备丢失？请改用恢复码。", "Mất thiết bị? Hãy dùng mã khôi phục.";
    RecoveryCode => "Recovery code", "恢复码", "Mã khôi phục";
    EnrollTitle => "Set up two-factor authentication", "设置两步验证", "Thiết lập xác thực hai bước";
    EnrollLead => "Scan the QR code with your authenticator app (or type the key), then enter the code it shows.", "使用身份验证器应用扫描二维码（或手动输入密钥），然后输入显示的验证码。", "Quét mã QR bằng ứng dụng xác thực (hoặc nhập khóa), rồi nhập mã hiển thị.";
    SecretKey => "Key", "密钥", "Khóa";
    RecoveryTitle => "Your recovery codes", "您的恢复码", "Mã khôi phục của bạn";
    RecoveryLead => "Each code signs you in once if you lose your authenticator. Keep them somewhere safe: they are not shown again.", "丢失身份验证器时，每个恢复码可登录一次。请妥善保存：它们不会再次显示。", "Mỗi mã dùng để đăng nhập một lần khi bạn mất thiết bị xác thực. Hãy cất giữ cẩn thận: chúng sẽ không hiển thị lại.";
    TwoFactorOn => "Two-factor authentication is on.", "两步验证已开启。", "Xác thực hai bước đang bật.";
    TwoFactorOff => "Two-factor authentication is off.", "两步验证未开启。", "Xác thực hai bước đang tắt.";
    CodesLeft => "Recovery codes left", "剩余恢复码", "Mã khôi phục còn lại";
    EnableTotp => "Turn on two-factor", "开启两步验证", "Bật xác thực hai bước";
    DisableTotp => "Turn off two-factor", "关闭两步验证", "Tắt xác thực hai bước";
    NewRecoveryCodes => "New recovery codes", "重新生成恢复码", "Tạo mã khôi phục mới";
    TrustedDevices => "Trusted browsers", "受信任的浏览器", "Trình duyệt tin cậy";
    Expires => "Expires", "过期时间", "Hết hạn";
    NoTrustedDevices => "No trusted browsers.", "没有受信任的浏览器。", "Không có trình duyệt tin cậy nào.";
    Invitations => "Invitations", "邀请", "Lời mời";
    InvitationsLead => "These workspaces invited you to join. Nothing changes until you accept.", "以下工作区邀请您加入。接受之前不会有任何变化。", "Các không gian làm việc này mời bạn tham gia. Không có gì thay đổi cho đến khi bạn chấp nhận.";
    Workspace => "Workspace", "工作区", "Không gian làm việc";
    Accept => "Accept", "接受", "Chấp nhận";
    Decline => "Decline", "拒绝", "Từ chối";
    InvitationAccepted => "You joined the workspace. Sign in again to work in it.", "您已加入该工作区。请重新登录以在其中工作。", "Bạn đã tham gia không gian làm việc. Hãy đăng nhập lại để làm việc trong đó.";
    InvitationDeclined => "The invitation was declined.", "已拒绝该邀请。", "Đã từ chối lời mời.";
    AccessTokens => "Personal access tokens", "个人访问令牌", "Mã truy cập cá nhân";
    NoAccessTokens => "No personal access tokens.", "没有个人访问令牌。", "Không có mã truy cập cá nhân nào.";
    TokenName => "Name", "名称", "Tên";
    LastUsed => "Last used", "最近使用", "Dùng lần cuối";
    Days => "days", "天", "ngày";
    CreateToken => "Create token", "创建令牌", "Tạo mã";
    TokenCreatedTitle => "Your new personal access token", "您的新个人访问令牌", "Mã truy cập cá nhân mới của bạn";
    TokenCreatedLead => "Copy it now: it is not shown again. Use it as \"Authorization: Bearer …\".", "请立即复制：它不会再次显示。使用方式为 \"Authorization: Bearer …\"。", "Hãy sao chép ngay: mã sẽ không hiển thị lại. Dùng dưới dạng \"Authorization: Bearer …\".";
    Copy => "Copy", "复制", "Sao chép";
    TokenRevoked => "The token was revoked.", "令牌已撤销。", "Đã thu hồi mã.";
    ForgotLink => "Forgot your password?", "忘记密码？", "Quên mật khẩu?";
    ForgotTitle => "Forgot your password", "忘记密码", "Quên mật khẩu";
    ForgotLead => "Enter your email or username and we will mail you a code to reset your password.", "输入您的邮箱或用户名，我们将通过邮件发送重置密码的验证码。", "Nhập email hoặc tên người dùng, chúng tôi sẽ gửi mã đặt lại mật khẩu qua email.";
    SendCode => "Send code", "发送验证码", "Gửi mã";
    ForgotSent => "If an account matches, a code is on its way to its email address.", "如果有匹配的账户，验证码已发送到其邮箱。", "Nếu có tài khoản phù hợp, mã đã được gửi đến email của tài khoản đó.";
    ResetTitle => "Reset your password", "重置密码", "Đặt lại mật khẩu";
    ResetLead => "Enter the code from the email and choose a new password.", "输入邮件中的验证码并设置新密码。", "Nhập mã trong email và chọn mật khẩu mới.";
    ResetCode => "Code", "验证码", "Mã";
    ResetDone => "Your password was reset and every session was signed out. Sign in with the new password.", "密码已重置，所有会话均已退出。请使用新密码登录。", "Đã đặt lại mật khẩu và mọi phiên đã bị đăng xuất. Hãy đăng nhập bằng mật khẩu mới.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_exists_in_every_locale() {
        for t in ALL {
            for l in [Locale::En, Locale::ZhCn, Locale::Vi] {
                assert!(!t.get(l).is_empty(), "{t:?} in {l:?}");
            }
        }
    }
}
