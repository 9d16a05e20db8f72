"""Audio Needle In A Haystack: haystacks (`haystack`), needles mixed into real backgrounds (`mixing`), the sweep
over lengths and positions (`sweep`) and the `evaluate` metric (`metric`)."""
