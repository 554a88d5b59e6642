use coffer_error::{ErrorKind, UserFacing};
use coffer_fleet::ReplicationError;

pub(crate) const CODES: &[&str] = &[
    "CF-V001", "CF-V010", "CF-V011", "CF-V012", "CF-V013", "CF-V014", "CF-V015", "CF-V016",
    "CF-V017", "CF-V018", "CF-V019", "CF-V020", "CF-V021", "CF-V022", "CF-V023", "CF-V024",
    "CF-V025",
];

/// Why the HSM refused or failed a request. Carries no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HsmError {
    #[error("the request is malformed: {0}")]
    Malformed(String),
    #[error("the recovery code is wrong; {attempts_remaining} attempts remain")]
    WrongCode { attempts_remaining: u32 },
    #[error(
        "the vault record no longer exists (destroyed after too many wrong codes, or deleted)"
    )]
    Destroyed,
    #[error("no majority of the HSM fleet is reachable; no guess was evaluated")]
    Unavailable,
    #[error("an OPAQUE message is invalid")]
    BadOpaqueMessage,
    #[error("the session token is invalid or expired")]
    BadToken,
    #[error("this account already has a vault record")]
    AlreadyRegistered,
    #[error("the change/delete authorisation is invalid, replayed or stale")]
    BadAuthorisation,
    #[error("the HSM failed internally: {0}")]
    Internal(String),
    #[error("another login attempt for this account began meanwhile")]
    StaleAttempt,
    /// The request's time is too far from the HSM's clock (a message
    /// captured earlier and replayed, or a wrong clock).
    #[error("the request's time is {skew_secs} s away from the HSM's clock (at most 600 s are accepted); nothing was counted")]
    StaleRequest { skew_secs: u64 },
    /// The same channel message 1 arrived before (a replay).
    #[error("this request was already received (a replay); it was not counted again")]
    ReplayedRequest,
    /// An account request outside the channel.
    #[error(
        "account requests are accepted only through the authenticated channel (POST /v2/vault)"
    )]
    NeedsChannel,
    /// The fleet's secrets hold no channel key (made before protocol v2).
    #[error("this fleet has no channel key (it was made before vault protocol v2)")]
    NoChannelKey,
    /// The time throttle: too many wrong guesses in a row, too recently.
    #[error("too many wrong recovery codes in a row: the vault takes the next attempt in {}; {attempts_remaining} attempts remain (this one counted nothing)", wait_text(*wait_secs))]
    Throttled {
        retry_at: u64,
        wait_secs: u64,
        attempts_remaining: u32,
    },
    /// No valid account ticket for the request's account. The same answer
    /// for every account and every reason (absent, forged, expired, for
    /// another account or fleet, without its holder's secret).
    #[error("the request carries no valid account ticket for its account: the e-mail address must be verified with a code from the mail first")]
    NoTicket,
    /// The fleet's secrets hold no ticket key (made before accounts were
    /// authenticated).
    #[error(
        "this fleet has no account-ticket key (it was made before accounts were authenticated)"
    )]
    NoTicketKey,
}

/// "3 minutes", "1 hour", "45 seconds": a wait, rounded up, for messages.
pub fn wait_text(secs: u64) -> String {
    let (n, unit) = if secs >= 2 * 3600 {
        (secs.div_ceil(3600), "hours")
    } else if secs >= 120 {
        (secs.div_ceil(60), "minutes")
    } else {
        (secs, "seconds")
    };
    match (n, unit) {
        (1, "seconds") => "1 second".into(),
        (n, u) => format!("{n} {u}"),
    }
}

impl HsmError {
    pub(crate) fn from_replication(e: ReplicationError) -> Self {
        match e {
            ReplicationError::Corrupt(m) => HsmError::Internal(format!("replicated state: {m}")),
            ReplicationError::NoQuorum
            | ReplicationError::ShuttingDown
            | ReplicationError::Other(_) => HsmError::Unavailable,
        }
    }

    /// Attempts remaining, where the error says so.
    pub fn attempts_remaining(&self) -> Option<u32> {
        match self {
            HsmError::WrongCode { attempts_remaining }
            | HsmError::Throttled {
                attempts_remaining, ..
            } => Some(*attempts_remaining),
            HsmError::Destroyed => Some(0),
            _ => None,
        }
    }
}

impl UserFacing for HsmError {
    fn kind(&self) -> ErrorKind {
        match self {
            HsmError::Malformed(_)
            | HsmError::BadOpaqueMessage
            | HsmError::BadToken
            | HsmError::BadAuthorisation
            | HsmError::StaleAttempt
            | HsmError::StaleRequest { .. }
            | HsmError::ReplayedRequest
            | HsmError::NeedsChannel => ErrorKind::InvalidInput,
            HsmError::NoChannelKey | HsmError::NoTicketKey => ErrorKind::Internal,
            HsmError::Throttled { .. } => ErrorKind::Throttled,
            HsmError::NoTicket => ErrorKind::AccountNotVerified,
            HsmError::WrongCode { .. } => ErrorKind::WrongRecoveryCode,
            HsmError::Destroyed => ErrorKind::RecordDestroyed,
            HsmError::Unavailable => ErrorKind::VaultUnavailable,
            HsmError::AlreadyRegistered => ErrorKind::AlreadyExists,
            HsmError::Internal(_) => ErrorKind::Internal,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            HsmError::Malformed(_) => "CF-V001",
            HsmError::WrongCode { .. } => "CF-V010",
            HsmError::Destroyed => "CF-V011",
            HsmError::Unavailable => "CF-V012",
            HsmError::BadOpaqueMessage => "CF-V013",
            HsmError::BadToken => "CF-V014",
            HsmError::AlreadyRegistered => "CF-V015",
            HsmError::BadAuthorisation => "CF-V016",
            HsmError::Internal(_) => "CF-V017",
            HsmError::StaleAttempt => "CF-V018",
            HsmError::StaleRequest { .. } => "CF-V019",
            HsmError::ReplayedRequest => "CF-V020",
            HsmError::NeedsChannel => "CF-V021",
            HsmError::NoChannelKey => "CF-V022",
            HsmError::Throttled { .. } => "CF-V023",
            HsmError::NoTicket => "CF-V024",
            HsmError::NoTicketKey => "CF-V025",
        }
    }
    fn next_step(&self) -> String {
        match self {
            HsmError::Malformed(_) | HsmError::BadOpaqueMessage => {
                "Use an up-to-date Coffer client; report it if it persists.".into()
            }
            HsmError::WrongCode { attempts_remaining: 0 } => {
                "No attempts remain: the record is destroyed. Use the recovery key if you have one."
                    .into()
            }
            HsmError::WrongCode { attempts_remaining: 1 } => {
                "Only ONE attempt remains: find the recovery kit before trying again; a wrong code destroys the record.".into()
            }
            HsmError::WrongCode { .. } => {
                "Check the recovery kit for the exact code and try again.".into()
            }
            HsmError::Destroyed => {
                "The key cannot come back from the vault; use the 64-digit recovery key if you have one."
                    .into()
            }
            HsmError::Unavailable => {
                "Try again later; no attempt was spent. Operators: restore a majority of the fleet."
                    .into()
            }
            HsmError::BadToken | HsmError::StaleAttempt => "Start the operation again.".into(),
            HsmError::AlreadyRegistered => {
                "Use `coffer vault change` to set a new code (needs the current one).".into()
            }
            HsmError::BadAuthorisation => "Recover (log in) again, then retry at once.".into(),
            HsmError::Internal(_) => "Report it with the vault node logs.".into(),
            HsmError::StaleRequest { .. } => {
                "Check this computer's date, time and time zone, then try again; no attempt was spent.".into()
            }
            HsmError::ReplayedRequest => {
                "Start the operation again; if it keeps happening, something between you and the vault is replaying messages.".into()
            }
            HsmError::NeedsChannel => "Update Coffer: account requests need vault protocol v2.".into(),
            HsmError::NoChannelKey => {
                "Operators: this fleet predates vault protocol v2; make a new fleet with `coffer-vault fleet create`.".into()
            }
            HsmError::Throttled { .. } => {
                "Wait until then and find the recovery kit meanwhile; if these attempts were not yours, someone who reads your mail is guessing: secure your mailbox.".into()
            }
            HsmError::NoTicket => {
                "Ask for a code by mail, type it, and try again within 30 minutes.".into()
            }
            HsmError::NoTicketKey => {
                "Operators: make a new fleet with `coffer-vault fleet create`.".into()
            }
        }
    }
}
