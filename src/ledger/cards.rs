//! Card keys (seed 002): issued in batches, printed once, kept only as a
//! keyed hash (the `CardKey` stream id). Redeeming one is a points credit
//! naming the card as an exclusive reference: single use, even under
//! concurrent redeems on several processes.

use aggregates::{
    Amount, CardKey, CardKeyCommand, Counterparty, Currency, Movement, NotRedeemable, Reason,
    Reference, WalletCommand,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use super::{operate, LedgerError, Moved};
use crate::config::Secret;
use crate::identity::limits;
use crate::store::{now, CommandError, CommandMeta, Store};

/// Unambiguous characters (no 0/O, 1/I/L): 31 symbols.
const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
const ALPHABET_LEN: usize = 31;
/// 16 symbols ≈ 79 bits: guessing is hopeless even without the rate limit.
const CODE_LEN: usize = 16;

/// A fresh card code, shown as `XXXX-XXXX-XXXX-XXXX`.
pub fn new_code() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let raw: String = (0..CODE_LEN)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET_LEN)] as char)
        .collect();
    raw.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("-")
}

/// The canonical form of what a user typed (case, dashes and spaces do not
/// matter), or `None` if it cannot be a card code.
pub fn normalize(input: &str) -> Option<String> {
    let s: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (s.len() == CODE_LEN && s.bytes().all(|b| ALPHABET[..ALPHABET_LEN].contains(&b))).then_some(s)
}

/// The card's stream id: HMAC-SHA256 of its canonical code, hex.
pub fn card_id(secret: &Secret, canonical: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(b"tidelog card key\0");
    mac.update(canonical.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// What `tidelog cards issue` asks for.
pub struct Batch {
    pub batch_id: String,
    pub points: Amount,
    pub count: usize,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Issues the batch's cards; returns the codes (the only time they exist in
/// clear).
pub async fn issue(
    store: &Store,
    secret: &Secret,
    meta: &CommandMeta,
    batch: &Batch,
    mut progress: impl FnMut(),
) -> anyhow::Result<Vec<String>> {
    let Batch {
        batch_id,
        points,
        count,
        expires_at,
    } = batch;
    let (points, count, expires_at) = (*points, *count, *expires_at);
    let mut codes = Vec::with_capacity(count);
    while codes.len() < count {
        let code = new_code();
        let id = card_id(
            secret,
            &normalize(&code).expect("generated codes are canonical"),
        );
        let at = now();
        match store
            .execute_only(&store.card_keys, &id, meta, || CardKeyCommand::Issue {
                batch_id: batch_id.to_owned(),
                points,
                expires_at,
                at,
            })
            .await
        {
            Ok(()) => {
                codes.push(code);
                progress();
            }
            // an 80-bit collision: draw again
            Err(CommandError::Domain(_)) => continue,
            Err(e) => anyhow::bail!("issuing a card: {e}"),
        }
    }
    Ok(codes)
}

#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    #[error("malformed card key")]
    Malformed,
    #[error("unknown or expired card key")]
    Unknown,
    #[error("card key already used")]
    Used,
    #[error("too many failed attempts; retry in {0} s")]
    RateLimited(u64),
    #[error(transparent)]
    Ledger(LedgerError),
    #[error("rate limit store: {0}")]
    Limits(#[from] sqlx::Error),
}

pub struct RedeemLimits {
    pub per_account: i32,
    pub per_ip: i32,
    pub window: std::time::Duration,
}

/// Redeems a card for `account_id`'s points. Failed attempts count against
/// the account and the client IP; past the limit even a valid card waits.
/// A retry of a successful redeem by the same account answers the same.
pub async fn redeem(
    store: &Store,
    secret: &Secret,
    limits_: &RedeemLimits,
    meta: &CommandMeta,
    account_id: Uuid,
    input: &str,
) -> Result<Moved, RedeemError> {
    let buckets = [
        (
            format!("redeem_fail:account:{account_id}"),
            limits_.per_account,
        ),
        (format!("redeem_fail:ip:{}", meta.client_ip), limits_.per_ip),
    ];
    for (bucket, max) in &buckets {
        if let Err(retry) = limits::check(&store.pool, bucket, *max, limits_.window).await? {
            return Err(RedeemError::RateLimited(retry));
        }
    }
    let result = attempt(store, secret, meta, account_id, input).await;
    if matches!(
        result,
        Err(RedeemError::Malformed | RedeemError::Unknown | RedeemError::Used)
    ) {
        for (bucket, max) in &buckets {
            // the next attempt's `check` decides; this only counts
            let _ = limits::hit(&store.pool, bucket, *max, limits_.window).await?;
        }
    }
    result
}

async fn attempt(
    store: &Store,
    secret: &Secret,
    meta: &CommandMeta,
    account_id: Uuid,
    input: &str,
) -> Result<Moved, RedeemError> {
    let canonical = normalize(input).ok_or(RedeemError::Malformed)?;
    let id = card_id(secret, &canonical);
    let card: CardKey = store
        .load(&id)
        .await
        .map_err(|e| RedeemError::Ledger(LedgerError::Store(e.to_string())))?;
    let at = now();
    let (batch_id, points) = card.redeemable(at).map_err(|e| match e {
        NotRedeemable::Unknown | NotRedeemable::Expired => RedeemError::Unknown,
    })?;
    let movement = || Movement {
        operation_id: format!("card:{id}"),
        amount: points,
        counter: Counterparty::ExternalCards,
        reason: Reason::Redeem,
        reference: Some(Reference::exclusive("card", id.clone())),
        description: format!("卡密充值 ({batch_id})"),
        at,
    };
    operate(store, account_id, Currency::Points, meta, || {
        WalletCommand::Credit(movement())
    })
    .await
    .map_err(|e| match e {
        LedgerError::ReferenceUsed(_) => RedeemError::Used,
        other => RedeemError::Ledger(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_normalize_whatever_the_case_and_dashes() {
        let code = new_code();
        assert_eq!(code.len(), CODE_LEN + 3);
        let canonical = normalize(&code).unwrap();
        assert_eq!(normalize(&code.to_lowercase()), Some(canonical.clone()));
        assert_eq!(normalize(&canonical), Some(canonical.clone()));
        assert_eq!(
            normalize(&format!(" {} ", code.replace('-', " "))),
            Some(canonical)
        );
        for bad in [
            "",
            "XXXX-XXXX-XXXX",
            "0000-0000-0000-0000",
            "ÄAAA-AAAA-AAAA-AAAA",
        ] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_card_id_is_keyed() {
        let a = card_id(&Secret::new("k1".into()), "AAAA");
        assert_eq!(a, card_id(&Secret::new("k1".into()), "AAAA"));
        assert_ne!(a, card_id(&Secret::new("k2".into()), "AAAA"));
        assert_eq!(a.len(), 64);
    }
}
