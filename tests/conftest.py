pytest_plugins = ["tests.fix_server"]
