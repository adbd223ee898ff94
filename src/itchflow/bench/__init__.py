"""Benchmarks: each module's ``run()`` returns figures, ``report()`` formats them, ``main()``
is what ``benchmarks/<name>.py`` and ``itchflow bench <name>`` call."""
