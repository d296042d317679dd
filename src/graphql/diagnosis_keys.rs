//! Uploading and withdrawing diagnosis keys.

use async_graphql::{Context, InputObject, Object};

use super::{types::DiagnosisKeyUpload, ContextExt, ResultExt};
use crate::diagnosis_keys::{self, KeyInput, UploadContext};

/// A temporary exposure key of the GAEN framework.
#[derive(InputObject)]
pub struct TemporaryExposureKeyInput {
    /// The 16 key bytes in standard base64.
    pub key_data: String,
    /// Start of the key's validity, in 10-minute intervals since the Unix epoch (UTC).
    pub rolling_start_interval_number: i32,
    /// Number of 10-minute intervals the key was valid, 1 to 144.
    pub rolling_period: i32,
    /// Transmission risk level, 0 to 8.
    pub transmission_risk_level: i32,
    /// GAEN report type: 0 UNKNOWN, 1 CONFIRMED_TEST, 2 CONFIRMED_CLINICAL_DIAGNOSIS,
    /// 3 SELF_REPORT, 4 RECURSIVE, 5 REVOKED.
    pub report_type: Option<i32>,
    /// Days from the onset of symptoms to the key's day, -14 to 14.
    pub days_since_onset_of_symptoms: Option<i32>,
}

/// Input of `uploadDiagnosisKeys`.
#[derive(InputObject)]
pub struct UploadDiagnosisKeysInput {
    /// The one-time code from the health center, such as `K7QM-3XRT-WP9C`.
    pub health_center_token: String,
    /// The keys of the last 14 days, at most 30 by default.
    pub keys: Vec<TemporaryExposureKeyInput>,
}

#[derive(Default)]
pub struct DiagnosisKeyMutation;

#[Object]
impl DiagnosisKeyMutation {
    /// Uploads the caller's diagnosis keys with a health-center token. The whole upload is
    /// rejected when any key is invalid, and then the token is not spent. Retrying the same
    /// upload with the same token returns the first result.
    async fn upload_diagnosis_keys(
        &self,
        context: &Context<'_>,
        input: UploadDiagnosisKeysInput,
    ) -> async_graphql::Result<DiagnosisKeyUpload> {
        let app = context.app();
        let request = context.request();
        let user_id = request.caller.require_user().graphql(context)?;
        let keys: Vec<KeyInput> = input
            .keys
            .into_iter()
            .map(|key| KeyInput {
                key_data: key.key_data,
                rolling_start_interval_number: i64::from(key.rolling_start_interval_number),
                rolling_period: key.rolling_period,
                transmission_risk_level: key.transmission_risk_level,
                report_type: key.report_type,
                days_since_onset_of_symptoms: key.days_since_onset_of_symptoms,
            })
            .collect();
        let upload_context = UploadContext {
            hasher: &app.code_hasher,
            rules: &app.key_rules,
            mode: app.verification_mode,
            attempts_by_user: &app.token_attempts_by_user,
            attempts_by_address: &app.token_attempts_by_address,
            now: app.clock.now(),
        };
        diagnosis_keys::upload(
            &app.db,
            &upload_context,
            user_id,
            request.client_address,
            &input.health_center_token,
            &keys,
        )
        .await
        .graphql(context)
        .map(DiagnosisKeyUpload)
    }

    /// Deletes all of the caller's uploads, so the next export no longer contains their keys.
    /// Returns the number of keys removed.
    async fn withdraw_diagnosis_keys(&self, context: &Context<'_>) -> async_graphql::Result<i32> {
        let user_id = context.request().caller.require_user().graphql(context)?;
        let removed = diagnosis_keys::withdraw(&context.app().db, user_id)
            .await
            .graphql(context)?;
        Ok(i32::try_from(removed).unwrap_or(i32::MAX))
    }
}
