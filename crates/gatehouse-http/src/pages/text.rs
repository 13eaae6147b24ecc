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
