//! Diesel table definitions; they mirror `migrations/` exactly.

diesel::table! {
    users (id) {
        id -> Uuid,
        username -> Varchar,
        email -> Varchar,
        hashed_password -> Varchar,
        role -> Text,
        is_active -> Bool,
        created_at -> Timestamptz,
        must_change_password -> Bool,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Uuid,
        user_id -> Uuid,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    agents (id) {
        id -> Uuid,
        name -> Varchar,
        hostname -> Nullable<Varchar>,
        version -> Nullable<Varchar>,
        status -> Text,
        last_heartbeat_at -> Nullable<Timestamptz>,
        cert_fingerprint -> Nullable<Varchar>,
        revoked_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        acked_epoch -> Nullable<Uuid>,
        acked_seq -> Int8,
        cert_not_after -> Nullable<Timestamptz>,
        model_version -> Nullable<Varchar>,
        fl_local_windows -> Nullable<Jsonb>,
    }
}

diesel::table! {
    enrollment_tokens (id) {
        id -> Uuid,
        token_hash -> Varchar,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        agent_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    devices (id) {
        id -> Uuid,
        agent_id -> Nullable<Uuid>,
        name -> Varchar,
        device_type -> Text,
        ip_address -> Inet,
        protocol -> Text,
        port -> Nullable<Int4>,
        status -> Text,
        traffic_source -> Text,
        description -> Nullable<Text>,
        last_seen_at -> Nullable<Timestamptz>,
        threat_count_today -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    traffic_logs (id, ts) {
        id -> Uuid,
        ts -> Timestamptz,
        device_id -> Uuid,
        features -> Array<Float4>,
        source_type -> Text,
        flow_index -> Nullable<Int4>,
        metadata -> Nullable<Jsonb>,
        received_at -> Timestamptz,
    }
}

diesel::table! {
    predictions (id) {
        id -> Uuid,
        device_id -> Uuid,
        score -> Float8,
        label -> Text,
        confidence -> Float8,
        attack_type -> Nullable<Text>,
        model_version -> Varchar,
        window_start -> Nullable<Uuid>,
        window_end -> Nullable<Uuid>,
        feature_importance -> Nullable<Jsonb>,
        inference_latency_ms -> Float8,
        ts -> Timestamptz,
        attack_session_id -> Nullable<Uuid>,
        attack_step -> Nullable<Int4>,
        clean_score -> Nullable<Float8>,
    }
}

diesel::table! {
    alerts (id) {
        id -> Uuid,
        device_id -> Uuid,
        prediction_id -> Nullable<Uuid>,
        alert_type -> Text,
        severity -> Text,
        message -> Text,
        is_acknowledged -> Bool,
        acknowledged_by -> Nullable<Uuid>,
        acknowledged_at -> Nullable<Timestamptz>,
        action_taken -> Nullable<Varchar>,
        ts -> Timestamptz,
    }
}

diesel::table! {
    attack_sessions (id) {
        id -> Uuid,
        device_id -> Uuid,
        pipeline_config -> Jsonb,
        status -> Text,
        progress_pct -> Float8,
        current_step -> Nullable<Int4>,
        results -> Nullable<Jsonb>,
        started_at -> Nullable<Timestamptz>,
        completed_at -> Nullable<Timestamptz>,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        model_version -> Nullable<Text>,
        message -> Nullable<Text>,
        command_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    attack_steps (id) {
        id -> Uuid,
        session_id -> Uuid,
        step_order -> Int4,
        attack_type -> Text,
        duration_seconds -> Int4,
        intensity -> Float8,
        variant -> Nullable<Varchar>,
        adversarial_enabled -> Bool,
        adversarial_epsilon -> Nullable<Float8>,
        status -> Text,
        detected -> Nullable<Bool>,
        avg_confidence -> Nullable<Float8>,
        detection_latency_ms -> Nullable<Float8>,
        auto_action_taken -> Nullable<Varchar>,
        started_at -> Nullable<Timestamptz>,
        completed_at -> Nullable<Timestamptz>,
        windows -> Nullable<Int4>,
        attack_windows -> Nullable<Int4>,
        detection_rate -> Nullable<Float8>,
        clean_detection_rate -> Nullable<Float8>,
        avg_score -> Nullable<Float8>,
        family_accuracy -> Nullable<Float8>,
        message -> Nullable<Text>,
    }
}

diesel::table! {
    prevention_rules (id) {
        id -> Uuid,
        device_id -> Nullable<Uuid>,
        rule_name -> Varchar,
        threshold -> Float8,
        action_type -> Text,
        is_enabled -> Bool,
        cooldown_seconds -> Int4,
        webhook_url -> Nullable<Varchar>,
        extra_config -> Nullable<Jsonb>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    prevention_logs (id) {
        id -> Uuid,
        rule_id -> Nullable<Uuid>,
        device_id -> Uuid,
        prediction_id -> Nullable<Uuid>,
        action_executed -> Varchar,
        success -> Bool,
        details -> Nullable<Jsonb>,
        ts -> Timestamptz,
    }
}

diesel::table! {
    fl_rounds (id) {
        id -> Int4,
        round_number -> Int4,
        num_clients -> Int4,
        global_loss -> Nullable<Float8>,
        global_accuracy -> Nullable<Float8>,
        global_f1 -> Nullable<Float8>,
        global_precision -> Nullable<Float8>,
        global_recall -> Nullable<Float8>,
        aggregation_method -> Varchar,
        he_scheme -> Nullable<Varchar>,
        he_poly_modulus -> Nullable<Int4>,
        duration_seconds -> Nullable<Float8>,
        model_checkpoint_path -> Nullable<Varchar>,
        ts -> Timestamptz,
        run_id -> Nullable<Uuid>,
        run_round -> Nullable<Int4>,
        status -> Varchar,
        reason -> Nullable<Text>,
        clients_selected -> Int4,
        clients_uploaded -> Int4,
        clients_dropped -> Int4,
        updates_rejected -> Int4,
        bytes_received -> Int8,
        model_version -> Nullable<Varchar>,
        start_model -> Nullable<Varchar>,
        f1_before -> Nullable<Float8>,
        activated -> Bool,
    }
}

diesel::table! {
    fl_runs (id) {
        id -> Uuid,
        status -> Varchar,
        params -> Jsonb,
        start_model -> Varchar,
        epoch -> Int8,
        committee -> Jsonb,
        rounds_done -> Int4,
        rounds_failed -> Int4,
        message -> Nullable<Text>,
        started_by -> Nullable<Uuid>,
        started_at -> Timestamptz,
        ended_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    fl_client_metrics (id) {
        id -> Int4,
        round_id -> Int4,
        client_id -> Varchar,
        local_loss -> Float8,
        local_accuracy -> Float8,
        num_samples -> Int4,
        training_time_sec -> Float8,
        encrypted -> Bool,
        status -> Varchar,
        reason -> Nullable<Text>,
        loss_before -> Nullable<Float8>,
        accuracy_before -> Nullable<Float8>,
        f1_before -> Nullable<Float8>,
        f1_after -> Nullable<Float8>,
        validation_windows -> Int4,
        upload_bytes -> Int8,
        details -> Nullable<Jsonb>,
    }
}

diesel::table! {
    system_settings (key) {
        key -> Varchar,
        value -> Jsonb,
        updated_at -> Timestamptz,
        updated_by -> Nullable<Uuid>,
    }
}

diesel::table! {
    agent_commands (id) {
        id -> Uuid,
        agent_id -> Nullable<Uuid>,
        device_id -> Nullable<Uuid>,
        command -> Text,
        payload -> Jsonb,
        status -> Text,
        requested_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        result -> Nullable<Text>,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(agent_commands -> agents (agent_id));
diesel::joinable!(devices -> agents (agent_id));
diesel::joinable!(enrollment_tokens -> agents (agent_id));
diesel::joinable!(traffic_logs -> devices (device_id));
diesel::joinable!(predictions -> devices (device_id));
diesel::joinable!(alerts -> devices (device_id));
diesel::joinable!(attack_steps -> attack_sessions (session_id));
diesel::joinable!(attack_sessions -> devices (device_id));
diesel::joinable!(fl_client_metrics -> fl_rounds (round_id));
diesel::joinable!(fl_rounds -> fl_runs (run_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    refresh_tokens,
    agents,
    devices,
    traffic_logs,
    predictions,
    alerts,
    attack_sessions,
    attack_steps,
    prevention_rules,
    prevention_logs,
    fl_rounds,
    fl_runs,
    fl_client_metrics,
    system_settings,
    agent_commands,
    enrollment_tokens,
);

diesel::table! {
    prediction_hours (hour, device_id) {
        hour -> Timestamptz,
        device_id -> Uuid,
        predictions -> Int8,
        attacks -> Int8,
    }
}
