//! The message-code catalog (docs/api.md, "Message codes"): every code the API can answer with, its HTTP
//! status, and its human message in each supported language.

use serde::Serialize;

/// A language the API speaks, chosen from `Accept-Language`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
pub enum Locale {
    #[default]
    En,
    ZhCn,
    Vi,
}

impl Locale {
    /// Picks the best supported language from an `Accept-Language` header value,
    /// honouring q-values; English when nothing matches.
    pub fn from_accept_language(header: &str) -> Self {
        let mut best: Option<(f32, Locale)> = None;
        for part in header.split(',').take(16) {
            let mut pieces = part.trim().split(';');
            let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let locale = if tag.starts_with("zh") {
                Some(Locale::ZhCn)
            } else if tag.starts_with("vi") {
                Some(Locale::Vi)
            } else if tag.starts_with("en") {
                Some(Locale::En)
            } else {
                None
            };
            if let Some(l) = locale
                && q > 0.0
                && best.is_none_or(|(bq, _)| q > bq)
            {
                best = Some((q, l));
            }
        }
        best.map(|(_, l)| l).unwrap_or_default()
    }

    /// The BCP 47 tag, for `lang` attributes and `Content-Language`.
    pub fn tag(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::ZhCn => "zh-CN",
            Locale::Vi => "vi",
        }
    }
}

macro_rules! catalog {
    ($( $variant:ident = $status:literal, $en:literal, $zh:literal, $vi:literal; )*) => {
        /// A stable machine code from the catalog.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        pub enum Code { $( $variant, )* }

        impl Code {
            /// Every code, in catalog order (for the OpenAPI document and README).
            pub const ALL: &'static [Code] = &[ $( Code::$variant, )* ];

            /// The code as sent on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $( Code::$variant => stringify!($variant), )* }
            }

            /// The HTTP status that goes with this code.
            pub fn status(self) -> u16 {
                match self { $( Code::$variant => $status, )* }
            }

            /// The human message in `locale`.
            pub fn message(self, locale: Locale) -> &'static str {
                match (self, locale) {
                    $(
                        (Code::$variant, Locale::En) => $en,
                        (Code::$variant, Locale::ZhCn) => $zh,
                        (Code::$variant, Locale::Vi) => $vi,
                    )*
                }
            }
        }
    };
}

catalog! {
    OK = 200, "OK", "成功", "Thành công";
    AUTH_LOGIN_SUCCESS = 200, "Signed in", "登录成功", "Đăng nhập thành công";
    AUTH_MFA_REQUIRED = 200, "Enter your two-factor code", "请输入两步验证码", "Nhập mã xác thực hai bước";
    AUTH_MFA_ENROLLMENT_REQUIRED = 200, "Set up two-factor authentication", "请设置两步验证", "Hãy thiết lập xác thực hai bước";
    AUTH_PASSWORD_CHANGE_REQUIRED = 200, "Choose a new password", "请设置新密码", "Hãy đặt mật khẩu mới";
    AUTH_REFRESH_SUCCESS = 200, "Session refreshed", "会话已刷新", "Đã làm mới phiên";
    AUTH_LOGOUT_SUCCESS = 200, "Signed out", "已退出登录", "Đã đăng xuất";
    EMAIL_NOT_VERIFIED = 200, "Confirm your e-mail address with the code we sent", "请用我们发送的验证码确认您的邮箱", "Hãy xác nhận địa chỉ email bằng mã chúng tôi đã gửi";
    VALIDATION_ERROR = 400, "Some fields are invalid", "部分字段无效", "Một số trường không hợp lệ";
    MALFORMED_JSON = 400, "The request body is not valid JSON", "请求体不是有效的 JSON", "Nội dung yêu cầu không phải JSON hợp lệ";
    UNSUPPORTED_MEDIA_TYPE = 415, "Send the body as application/json", "请使用 application/json 发送请求体", "Hãy gửi nội dung dạng application/json";
    REQUEST_TIMEOUT = 408, "The request body took too long to arrive", "请求体发送超时", "Nội dung yêu cầu đến quá chậm";
    PAYLOAD_TOO_LARGE = 413, "The request body is too large", "请求体过大", "Nội dung yêu cầu quá lớn";
    CSRF_MISSING = 403, "A CSRF token is required", "缺少 CSRF 令牌", "Thiếu mã CSRF";
    CSRF_INVALID = 403, "The CSRF token is invalid or expired", "CSRF 令牌无效或已过期", "Mã CSRF không hợp lệ hoặc đã hết hạn";
    AUTHENTICATION_REQUIRED = 401, "Sign in to continue", "请先登录", "Vui lòng đăng nhập";
    INVALID_CREDENTIALS = 401, "Email or password is incorrect", "邮箱或密码错误", "Email hoặc mật khẩu không đúng";
    TOKEN_INVALID = 401, "The token is invalid", "令牌无效", "Mã truy cập không hợp lệ";
    TOKEN_EXPIRED = 401, "The token has expired", "令牌已过期", "Mã truy cập đã hết hạn";
    TOKEN_REVOKED = 401, "The token has been revoked", "令牌已被撤销", "Mã truy cập đã bị thu hồi";
    REFRESH_TOKEN_REUSED = 401, "This refresh token was already used; the session has been ended", "刷新令牌已被使用，会话已终止", "Mã làm mới đã được dùng; phiên đã bị kết thúc";
    MFA_CODE_INVALID = 401, "The code is incorrect", "验证码错误", "Mã xác thực không đúng";
    CHALLENGE_INVALID = 401, "The sign-in attempt has expired; start again", "登录流程已过期，请重新开始", "Phiên đăng nhập đã hết hạn; hãy bắt đầu lại";
    EMAIL_CODE_INVALID = 400, "The code is wrong or has expired; ask for a new one", "验证码错误或已过期，请重新获取", "Mã không đúng hoặc đã hết hạn; hãy yêu cầu mã mới";
    ACCOUNT_DISABLED = 403, "This account is disabled", "账户已被禁用", "Tài khoản đã bị vô hiệu hóa";
    ACCOUNT_LOCKED = 423, "Too many failed attempts; try again later", "失败次数过多，请稍后再试", "Quá nhiều lần thử thất bại; hãy thử lại sau";
    PASSWORD_LOGIN_DISABLED = 403, "Password sign-in is disabled", "已禁用密码登录", "Đăng nhập bằng mật khẩu đã bị tắt";
    REGISTRATION_DISABLED = 403, "Registration is disabled", "已关闭注册", "Đăng ký đã bị tắt";
    WORKSPACE_DISABLED = 403, "This workspace is disabled", "工作区已被禁用", "Không gian làm việc đã bị vô hiệu hóa";
    MEMBER_DISABLED = 403, "Your membership is disabled", "成员资格已被禁用", "Tư cách thành viên đã bị vô hiệu hóa";
    BRANCH_CONTEXT_REQUIRED = 403, "Select a branch first", "请先选择分支", "Hãy chọn chi nhánh trước";
    PERMISSION_REQUIRED = 403, "You do not have permission to do this", "没有执行此操作的权限", "Bạn không có quyền thực hiện thao tác này";
    SESSION_REQUIRED = 403, "This needs a signed-in session; access tokens and API keys cannot do it", "此操作需要登录会话，个人访问令牌和 API 密钥不能执行", "Thao tác này cần phiên đăng nhập; mã truy cập cá nhân và khóa API không thể thực hiện";
    PASSWORD_POLICY_VIOLATION = 422, "The new password does not meet the password policy", "新密码不符合密码策略", "Mật khẩu mới không đáp ứng chính sách mật khẩu";
    NOT_FOUND = 404, "Not found", "未找到", "Không tìm thấy";
    METHOD_NOT_ALLOWED = 405, "Method not allowed", "不允许的请求方法", "Phương thức không được phép";
    CONFLICT = 409, "This conflicts with an existing record", "与现有记录冲突", "Xung đột với bản ghi hiện có";
    RATE_LIMIT_EXCEEDED = 429, "Too many requests; slow down", "请求过于频繁，请稍后再试", "Quá nhiều yêu cầu; hãy chậm lại";
    SSO_STATE_INVALID = 400, "The sign-in state is invalid", "单点登录状态无效", "Trạng thái đăng nhập SSO không hợp lệ";
    SSO_PROVIDER_ERROR = 502, "The identity provider failed", "身份提供方出错", "Nhà cung cấp danh tính gặp lỗi";
    SSO_IDENTIFIER_REJECTED = 403, "This identity is not allowed here", "该身份不被允许", "Danh tính này không được phép";
    SSO_LINK_REQUIRED = 409, "An account with this e-mail already exists: sign in with your password, then link this provider from your account page", "已存在使用此邮箱的账户：请先用密码登录，再在账户页面关联此身份提供方", "Đã có tài khoản dùng email này: hãy đăng nhập bằng mật khẩu, rồi liên kết nhà cung cấp này từ trang tài khoản";
    SSO_REAUTHENTICATION_REQUIRED = 401, "Sign in again to link a provider", "请重新登录后再关联身份提供方", "Hãy đăng nhập lại để liên kết nhà cung cấp";
    SSO_LAST_SIGN_IN_METHOD = 409, "This is the account's last way to sign in", "这是该账户唯一的登录方式", "Đây là cách đăng nhập cuối cùng của tài khoản";
    SSO_PROVIDER_DENIED = 403, "The identity provider did not sign you in", "身份提供方未完成登录", "Nhà cung cấp danh tính không đăng nhập cho bạn";
    JWT_KEY_NOT_CONFIGURED = 503, "Token signing is not configured", "未配置令牌签名密钥", "Chưa cấu hình khóa ký mã truy cập";
    SERVICE_UNAVAILABLE = 503, "The service is temporarily unavailable", "服务暂时不可用", "Dịch vụ tạm thời không khả dụng";
    INTERNAL_ERROR = 500, "Something went wrong", "服务器内部错误", "Đã xảy ra lỗi";
}

impl Code {
    /// True for the success codes (`success: true` envelopes).
    pub fn is_success(self) -> bool {
        self.status() < 400
    }
}

/// Human text for a per-field error code.
pub fn field_message(code: &str, locale: Locale) -> &'static str {
    match (code, locale) {
        ("required", Locale::En) => "This field is required",
        ("required", Locale::ZhCn) => "此字段为必填项",
        ("required", Locale::Vi) => "Trường này là bắt buộc",
        ("invalid_type", Locale::En) => "This field has the wrong type",
        ("invalid_type", Locale::ZhCn) => "字段类型错误",
        ("invalid_type", Locale::Vi) => "Trường này sai kiểu dữ liệu",
        ("too_long", Locale::En) => "This value is too long",
        ("too_long", Locale::ZhCn) => "值过长",
        ("too_long", Locale::Vi) => "Giá trị quá dài",
        ("too_short", Locale::En) => "This value is too short",
        ("too_short", Locale::ZhCn) => "值过短",
        ("too_short", Locale::Vi) => "Giá trị quá ngắn",
        ("invalid_email", Locale::En) => "Enter a valid email address",
        ("invalid_email", Locale::ZhCn) => "请输入有效的邮箱地址",
        ("invalid_email", Locale::Vi) => "Hãy nhập địa chỉ email hợp lệ",
        ("invalid_username", Locale::En) => "Use 3-64 letters, digits, dots, dashes or underscores",
        ("invalid_username", Locale::ZhCn) => "请使用 3-64 个字母、数字、点、横线或下划线",
        ("invalid_username", Locale::Vi) => {
            "Dùng 3-64 chữ cái, chữ số, dấu chấm, gạch ngang hoặc gạch dưới"
        }
        ("unknown_field", Locale::En) => "This field is not recognised",
        ("unknown_field", Locale::ZhCn) => "无法识别的字段",
        ("unknown_field", Locale::Vi) => "Trường này không được hỗ trợ",
        ("last_admin", Locale::En) => "The last active administrator cannot be disabled",
        ("last_admin", Locale::ZhCn) => "不能停用最后一个有效的管理员",
        ("last_admin", Locale::Vi) => {
            "Không thể vô hiệu hóa quản trị viên cuối cùng đang hoạt động"
        }
        ("duplicate", Locale::En) => "This field appears more than once",
        ("duplicate", Locale::ZhCn) => "该字段重复出现",
        ("duplicate", Locale::Vi) => "Trường này xuất hiện nhiều lần",
        ("same_as_current", Locale::En) => "The new password must differ from the current one",
        ("same_as_current", Locale::ZhCn) => "新密码不能与当前密码相同",
        ("same_as_current", Locale::Vi) => "Mật khẩu mới phải khác mật khẩu hiện tại",
        ("common_password", Locale::En) => "This password is too common",
        ("common_password", Locale::ZhCn) => "该密码过于常见",
        ("common_password", Locale::Vi) => "Mật khẩu này quá phổ biến",
        ("missing_uppercase", Locale::En) => "Add an uppercase letter",
        ("missing_uppercase", Locale::ZhCn) => "需要包含大写字母",
        ("missing_uppercase", Locale::Vi) => "Thêm một chữ in hoa",
        ("missing_lowercase", Locale::En) => "Add a lowercase letter",
        ("missing_lowercase", Locale::ZhCn) => "需要包含小写字母",
        ("missing_lowercase", Locale::Vi) => "Thêm một chữ thường",
        ("missing_digit", Locale::En) => "Add a digit",
        ("missing_digit", Locale::ZhCn) => "需要包含数字",
        ("missing_digit", Locale::Vi) => "Thêm một chữ số",
        ("missing_special", Locale::En) => "Add a special character",
        ("missing_special", Locale::ZhCn) => "需要包含特殊字符",
        ("missing_special", Locale::Vi) => "Thêm một ký tự đặc biệt",
        ("contains_identifier", Locale::En) => {
            "The password must not contain your email or username"
        }
        ("contains_identifier", Locale::ZhCn) => "密码不能包含邮箱或用户名",
        ("contains_identifier", Locale::Vi) => "Mật khẩu không được chứa email hoặc tên người dùng",
        (_, Locale::En) => "This value is invalid",
        (_, Locale::ZhCn) => "值无效",
        (_, Locale::Vi) => "Giá trị không hợp lệ",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_honours_q_values() {
        assert_eq!(
            Locale::from_accept_language("vi;q=0.4, zh-CN;q=0.9"),
            Locale::ZhCn
        );
        assert_eq!(Locale::from_accept_language("fr, vi"), Locale::Vi);
        assert_eq!(Locale::from_accept_language("fr-FR"), Locale::En);
        assert_eq!(Locale::from_accept_language(""), Locale::En);
    }

    #[test]
    fn every_code_has_a_message_in_every_locale() {
        for code in Code::ALL {
            for l in [Locale::En, Locale::ZhCn, Locale::Vi] {
                assert!(!code.message(l).is_empty(), "{code:?}");
            }
            assert!((200..600).contains(&code.status()));
        }
    }
}
