pytest_plugins = ["tests.fix_server", "tests.fix_cluster", "tests.fix_drivers", "tests.fix_monitor"]
