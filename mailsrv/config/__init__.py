"""Configuration: the TOML file, validated into frozen objects before any port is bound."""
