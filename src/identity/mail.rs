//! Outgoing mail: a real SMTP client (lettre) when `SMTP_URL` is set; else
//! the message is written to the server log (the embedded default's
//! documented stand-in, so codes can still be read while developing).

use anyhow::Context;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Mailbox, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::Config;

pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    Log,
}

impl Mailer {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let Some(url) = &config.smtp_url else {
            tracing::warn!("SMTP_URL is not set: email codes are written to this log, not mailed");
            return Ok(Self::Log);
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
            .context("SMTP_URL is invalid (expected smtp://[user:pass@]host[:port][?tls=required] or smtps://…)")?
            .timeout(Some(std::time::Duration::from_secs(10)))
            .build();
        let from = config
            .smtp_from
            .parse()
            .with_context(|| format!("SMTP_FROM={:?} is not a mailbox", config.smtp_from))?;
        Ok(Self::Smtp { transport, from })
    }

    /// Sends a one-time code. The body is quoted-printable, so the digits
    /// stay readable in the raw message.
    pub async fn send_code(&self, to: &str, code: &str, purpose: &str) -> anyhow::Result<()> {
        let minutes = "10";
        let text = format!(
            "您的验证码是 / Your verification code is:\r\n\r\n{code}\r\n\r\n用途 / For: {purpose}\r\n\
             {minutes} 分钟内有效，仅可使用一次。如非本人操作，请忽略本邮件。\r\n"
        );
        match self {
            Self::Log => {
                tracing::info!(
                    to,
                    code,
                    purpose,
                    "email code (SMTP_URL not set, not mailed)"
                );
                Ok(())
            }
            Self::Smtp { transport, from } => {
                let message = Message::builder()
                    .from(from.clone())
                    .to(to.parse().context("recipient address")?)
                    .subject("验证码 / Verification code")
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .header(ContentTransferEncoding::QuotedPrintable)
                            .body(text),
                    )
                    .context("building the message")?;
                transport.send(message).await.context("SMTP delivery")?;
                tracing::info!(purpose, "email code mailed");
                Ok(())
            }
        }
    }
}
