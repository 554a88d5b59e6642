//! The OPAQUE cipher suite (RFC 9807): Ristretto255 OPRF, TripleDH over
//! Ristretto255 with SHA-512, Argon2id as the key-stretching function.

use opaque_ke::argon2::{Algorithm, Argon2, Params, Version};
use opaque_ke::ciphersuite::CipherSuite;

/// The suite every Coffer vault client and HSM uses.
pub struct Suite;

impl CipherSuite for Suite {
    type OprfCs = opaque_ke::Ristretto255;
    type KeyExchange = opaque_ke::TripleDh<opaque_ke::Ristretto255, sha2::Sha512>;
    type Ksf = Argon2<'static>;
}

/// Argon2id memory cost in KiB (64 MiB).
pub const KSF_M_COST_KIB: u32 = 65_536;
/// Argon2id passes.
pub const KSF_T_COST: u32 = 2;
/// Argon2id lanes.
pub const KSF_P_COST: u32 = 1;
/// The parameters as reported by `status` and written in the docs.
pub const KSF_DESCRIPTION: &str = "argon2id v19 m=65536KiB t=2 p=1";

/// The key-stretching function with the documented parameters. The same
/// parameters must be used at registration and at every login; they are
/// never weakened (tests use them too: the dev profile optimises argon2).
pub fn ksf() -> Argon2<'static> {
    let params = Params::new(KSF_M_COST_KIB, KSF_T_COST, KSF_P_COST, None)
        .unwrap_or_else(|_| unreachable_params());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

#[cold]
fn unreachable_params() -> Params {
    // The constants above are valid Argon2 parameters; this is never reached.
    // Fall back to the library's defaults rather than panic.
    Params::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ksf_has_the_documented_parameters() {
        let k = ksf();
        let p = k.params();
        assert_eq!(p.m_cost(), KSF_M_COST_KIB);
        assert_eq!(p.t_cost(), KSF_T_COST);
        assert_eq!(p.p_cost(), KSF_P_COST);
        assert!(KSF_DESCRIPTION.contains(&format!("m={KSF_M_COST_KIB}KiB")));
    }
}
