//! What the HSM tells the host so that it can mail the owner of an account:
//! a wrong guess was counted, or the record was destroyed. A notice names
//! the account (the host's account service issued that account's ticket,
//! so it knows the address anyway) and carries nothing secret.

/// One event to tell an account's owner about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountNotice {
    /// The normalised account (an e-mail address).
    pub account: String,
    /// When the attempt began (the HSM's clock, Unix seconds).
    pub at: u64,
    pub kind: NoticeKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeKind {
    /// A wrong recovery code was counted (the client said so, or never
    /// finished the login within the token's lifetime).
    WrongGuess { attempts_remaining: u32 },
    /// The last allowed attempt was spent: the record is destroyed.
    Destroyed,
}

/// Where the HSM hands its notices (the host's account service mails them).
/// Called from the HSM's request handling: it must not block.
pub trait NoticeSink: Send + Sync {
    fn notice(&self, notice: AccountNotice);
}
