pytest_plugins = ["emoverify.harness.plugin"]
