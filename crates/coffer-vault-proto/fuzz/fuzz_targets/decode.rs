//! Untrusted bytes into the vault's decoders: they must never panic, and
//! whatever decodes must re-encode to something that decodes to the same
//! value. The OPAQUE messages inside are parsed too, as the HSM and the
//! client would.
#![no_main]

use coffer_vault_proto::{
    decode_request, decode_response, encode_request, encode_response, Request, Response, Suite,
};
use libfuzzer_sys::fuzz_target;
use opaque_ke::{
    CredentialFinalization, CredentialRequest, CredentialResponse, RegistrationRequest,
    RegistrationResponse, RegistrationUpload,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = decode_request(data) {
        assert_eq!(decode_request(&encode_request(&r)).ok(), Some(r.clone()));
        match &r {
            Request::RegisterStart { request, .. } => {
                let _ = RegistrationRequest::<Suite>::deserialize(&request.0);
            }
            Request::RegisterFinish { upload, .. } | Request::Change { upload, .. } => {
                let _ = RegistrationUpload::<Suite>::deserialize(&upload.0);
            }
            Request::LoginStart { request, .. } => {
                let _ = CredentialRequest::<Suite>::deserialize(&request.0);
            }
            Request::LoginFinish { finalization, .. } => {
                let _ = CredentialFinalization::<Suite>::deserialize(&finalization.0);
            }
            _ => {}
        }
    }
    if let Ok(r) = decode_response(data) {
        assert_eq!(decode_response(&encode_response(&r)).ok(), Some(r.clone()));
        match &r {
            Response::RegisterStarted { response, .. } => {
                let _ = RegistrationResponse::<Suite>::deserialize(&response.0);
            }
            Response::LoginStarted { response, .. } => {
                let _ = CredentialResponse::<Suite>::deserialize(&response.0);
            }
            _ => {}
        }
    }
});
