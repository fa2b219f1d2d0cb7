ALTER TABLE fl_client_metrics
    DROP COLUMN status, DROP COLUMN reason, DROP COLUMN loss_before, DROP COLUMN accuracy_before,
    DROP COLUMN f1_before, DROP COLUMN f1_after, DROP COLUMN validation_windows, DROP COLUMN upload_bytes,
    DROP COLUMN details;
DROP INDEX fl_rounds_run_idx;
ALTER TABLE fl_rounds
    DROP COLUMN run_id, DROP COLUMN run_round, DROP COLUMN status, DROP COLUMN reason,
    DROP COLUMN clients_selected, DROP COLUMN clients_uploaded, DROP COLUMN clients_dropped,
    DROP COLUMN updates_rejected, DROP COLUMN bytes_received, DROP COLUMN model_version,
    DROP COLUMN start_model, DROP COLUMN f1_before, DROP COLUMN activated;
DROP TABLE fl_runs;
ALTER TABLE agents DROP COLUMN fl_local_windows;
