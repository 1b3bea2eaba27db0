"""The SQL results database: the durable ledger of devices, commands, events and tokens."""
