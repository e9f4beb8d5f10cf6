"""`ivideogpt play`: drive a world model from a web page, one KV-cached rollout per browser tab.

`model` loads a checkpoint with what the page must know about its actions; `session` holds one
tab's rollout; `engine` steps the sessions (concurrent tabs batched into one forward); `app` is
the HTTP API and the static page; `latency` measures click-to-frame.
"""
