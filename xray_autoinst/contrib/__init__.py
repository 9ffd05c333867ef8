"""One module per instrumented library, each with patch(), unpatch() and get_version()."""
