"""The IoT box agent (``lancert box``): obtains, renews and serves its HTTPS certificate."""
