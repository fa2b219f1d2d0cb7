DROP TABLE agent_commands, system_settings, fl_client_metrics, fl_rounds, prevention_logs, prevention_rules,
    attack_steps, attack_sessions, alerts, predictions, traffic_logs, devices, agents, refresh_tokens, users;
