//! Message templates in en / zh-CN / vi, plain text and HTML. No tracking, no remote
//! images: the HTML is the plain text's paragraphs, escaped, with the code set apart.

use gatehouse_domain::Locale;

/// What a message says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    PasswordReset,
    PasswordChanged,
    VerifyEmail,
    ChangeEmail,
    EmailChanged,
}

impl Kind {
    /// The outbox `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PasswordReset => "password_reset",
            Kind::PasswordChanged => "notice.password_changed",
            Kind::VerifyEmail => "verify_email",
            Kind::ChangeEmail => "change_email",
            Kind::EmailChanged => "notice.email_changed",
        }
    }
}

/// The values a template fills in.
#[derive(Clone, Debug, Default)]
pub struct Vars<'a> {
    pub code: Option<&'a str>,
    pub link: Option<&'a str>,
    pub minutes: u64,
}

/// A rendered message.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// `en`, `zh-CN` or `vi` (validated config) as a locale.
pub fn locale(tag: &str) -> Locale {
    match tag {
        "zh-CN" => Locale::ZhCn,
        "vi" => Locale::Vi,
        _ => Locale::En,
    }
}

struct Texts {
    subject: &'static str,
    intro: &'static str,
    /// Before the code and link (codes only).
    action: &'static str,
    /// `{minutes}` is filled in.
    expiry: &'static str,
    not_you: &'static str,
}

fn texts(kind: Kind, l: Locale) -> Texts {
    match (kind, l) {
        (Kind::PasswordReset, Locale::En) => Texts {
            subject: "Reset your password",
            intro: "Someone asked to reset the password of your account.",
            action: "Enter this code on the reset page, or open the link:",
            expiry: "The code is valid for {minutes} minutes and can be used once.",
            not_you: "If this was not you, ignore this message: your password stays as it is.",
        },
        (Kind::PasswordReset, Locale::ZhCn) => Texts {
            subject: "重置您的密码",
            intro: "有人请求重置您账户的密码。",
            action: "请在重置页面输入以下验证码，或打开链接：",
            expiry: "验证码 {minutes} 分钟内有效，只能使用一次。",
            not_you: "如果这不是您本人的操作，请忽略此邮件：您的密码不会改变。",
        },
        (Kind::PasswordReset, Locale::Vi) => Texts {
            subject: "Đặt lại mật khẩu",
            intro: "Có người đã yêu cầu đặt lại mật khẩu tài khoản của bạn.",
            action: "Nhập mã này trên trang đặt lại mật khẩu, hoặc mở liên kết:",
            expiry: "Mã có hiệu lực trong {minutes} phút và chỉ dùng được một lần.",
            not_you: "Nếu không phải bạn, hãy bỏ qua thư này: mật khẩu của bạn vẫn giữ nguyên.",
        },
        (Kind::VerifyEmail, Locale::En) => Texts {
            subject: "Confirm your e-mail address",
            intro: "Confirm that this address belongs to your new account.",
            action: "Enter this code when you sign in, or open the link:",
            expiry: "The code is valid for {minutes} minutes and can be used once.",
            not_you: "If you did not create an account, ignore this message.",
        },
        (Kind::VerifyEmail, Locale::ZhCn) => Texts {
            subject: "确认您的邮箱地址",
            intro: "请确认此邮箱地址属于您的新账户。",
            action: "登录时请输入以下验证码，或打开链接：",
            expiry: "验证码 {minutes} 分钟内有效，只能使用一次。",
            not_you: "如果您没有注册账户，请忽略此邮件。",
        },
        (Kind::VerifyEmail, Locale::Vi) => Texts {
            subject: "Xác nhận địa chỉ email",
            intro: "Hãy xác nhận địa chỉ này thuộc về tài khoản mới của bạn.",
            action: "Nhập mã này khi đăng nhập, hoặc mở liên kết:",
            expiry: "Mã có hiệu lực trong {minutes} phút và chỉ dùng được một lần.",
            not_you: "Nếu bạn không tạo tài khoản, hãy bỏ qua thư này.",
        },
        (Kind::ChangeEmail, Locale::En) => Texts {
            subject: "Confirm your new e-mail address",
            intro: "Someone asked to use this address for their account.",
            action: "Enter this code on the account page, or open the link while signed in:",
            expiry: "The code is valid for {minutes} minutes and can be used once.",
            not_you: "If this was not you, ignore this message: nothing changes.",
        },
        (Kind::ChangeEmail, Locale::ZhCn) => Texts {
            subject: "确认您的新邮箱地址",
            intro: "有人请求将此地址用于其账户。",
            action: "请在账户页面输入以下验证码，或在登录状态下打开链接：",
            expiry: "验证码 {minutes} 分钟内有效，只能使用一次。",
            not_you: "如果这不是您本人的操作，请忽略此邮件：不会有任何更改。",
        },
        (Kind::ChangeEmail, Locale::Vi) => Texts {
            subject: "Xác nhận địa chỉ email mới",
            intro: "Có người đã yêu cầu dùng địa chỉ này cho tài khoản của họ.",
            action: "Nhập mã này trên trang tài khoản, hoặc mở liên kết khi đã đăng nhập:",
            expiry: "Mã có hiệu lực trong {minutes} phút và chỉ dùng được một lần.",
            not_you: "Nếu không phải bạn, hãy bỏ qua thư này: không có gì thay đổi.",
        },
        (Kind::EmailChanged, Locale::En) => Texts {
            subject: "Your e-mail address was changed",
            intro: "The e-mail address of your account was just changed; mail now goes to the new address.",
            action: "",
            expiry: "",
            not_you: "If this was not you, contact your administrator at once.",
        },
        (Kind::EmailChanged, Locale::ZhCn) => Texts {
            subject: "您的邮箱地址已更改",
            intro: "您账户的邮箱地址刚刚被更改，今后邮件将发送到新地址。",
            action: "",
            expiry: "",
            not_you: "如果这不是您本人的操作，请立即联系管理员。",
        },
        (Kind::EmailChanged, Locale::Vi) => Texts {
            subject: "Địa chỉ email của bạn đã được thay đổi",
            intro: "Địa chỉ email của tài khoản bạn vừa được thay đổi; thư từ nay gửi đến địa chỉ mới.",
            action: "",
            expiry: "",
            not_you: "Nếu không phải bạn, hãy liên hệ quản trị viên ngay.",
        },
        (Kind::PasswordChanged, Locale::En) => Texts {
            subject: "Your password was changed",
            intro: "The password of your account was just changed, and every session was signed out.",
            action: "",
            expiry: "",
            not_you: "If this was not you, reset your password at once and contact your administrator.",
        },
        (Kind::PasswordChanged, Locale::ZhCn) => Texts {
            subject: "您的密码已更改",
            intro: "您账户的密码刚刚被更改，所有会话均已退出。",
            action: "",
            expiry: "",
            not_you: "如果这不是您本人的操作，请立即重置密码并联系管理员。",
        },
        (Kind::PasswordChanged, Locale::Vi) => Texts {
            subject: "Mật khẩu của bạn đã được thay đổi",
            intro: "Mật khẩu tài khoản của bạn vừa được thay đổi và mọi phiên đã bị đăng xuất.",
            action: "",
            expiry: "",
            not_you: "Nếu không phải bạn, hãy đặt lại mật khẩu ngay và liên hệ quản trị viên.",
        },
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Renders `kind` in `locale` with `vars`.
pub fn render(kind: Kind, locale: Locale, vars: &Vars<'_>) -> Rendered {
    let t = texts(kind, locale);
    let expiry = t.expiry.replace("{minutes}", &vars.minutes.to_string());
    let mut text = vec![t.intro.to_string()];
    let mut html = vec![format!("<p>{}</p>", escape(t.intro))];
    if let Some(code) = vars.code {
        text.push(t.action.to_string());
        html.push(format!("<p>{}</p>", escape(t.action)));
        text.push(format!("    {code}"));
        html.push(format!(
            "<p style=\"font-size:24px;font-family:monospace;letter-spacing:4px\"><strong>{}</strong></p>",
            escape(code)
        ));
        if let Some(link) = vars.link {
            text.push(link.to_string());
            html.push(format!("<p><a href=\"{0}\">{0}</a></p>", escape(link)));
        }
        text.push(expiry.clone());
        html.push(format!("<p>{}</p>", escape(&expiry)));
    }
    text.push(t.not_you.to_string());
    html.push(format!("<p>{}</p>", escape(t.not_you)));
    let lang = match locale {
        Locale::En => "en",
        Locale::ZhCn => "zh-CN",
        Locale::Vi => "vi",
    };
    Rendered {
        subject: t.subject.to_string(),
        text: text.join("\n\n") + "\n",
        html: format!(
            "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\"><title>{}</title></head><body>{}</body></html>\n",
            escape(t.subject),
            html.join("\n")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_carries_code_link_and_expiry_without_remote_content() {
        for l in [Locale::En, Locale::ZhCn, Locale::Vi] {
            let r = render(
                Kind::PasswordReset,
                l,
                &Vars {
                    code: Some("ABCD2345"),
                    link: Some("https://id.example/password/reset?code=ABCD2345&x=<y>"),
                    minutes: 30,
                },
            );
            assert!(r.text.contains("ABCD2345") && r.html.contains("ABCD2345"));
            assert!(r.text.contains("30") && r.html.contains("30"));
            assert!(r.html.contains("x=&lt;y&gt;"), "links are escaped in HTML");
            assert!(!r.html.contains("<img") && !r.html.contains("<script"));
        }
        let notice = render(Kind::PasswordChanged, Locale::En, &Vars::default());
        assert!(notice.text.contains("not you"));
    }
}
