"""Personal information (Article 2(1)(4) customer information) in requests, in Japanese and English.

`analyzer.PiiAnalyzer` (Presidio, loaded once per process) finds it; `lookup.lookup_for` says what
the policy asks for; `placeholders` replaces values reversibly and restores them in answers. Nothing
here knows HTTP; importing this package loads no model.
"""
