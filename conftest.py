pytest_plugins = ["emoverify.pytest_plugin"]
