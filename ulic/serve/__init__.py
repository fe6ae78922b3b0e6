"""`ulic serve`: a small local web app to try ulic on your own images.

Drop an image, choose a target (bpp, bytes or quality), a decoder and realism; see the original and
the decoded image side by side or under a slider, at fit or 100% zoom, with the file size, bpp,
PSNR/LPIPS and encode/decode seconds; download the .ulic file and the decoded PNG.

Layout: `app` (Flask routes, upload checks), `jobs` (one worker thread, bounded queue and history),
`cli` (the `ulic serve` command on the waitress server), `static/` (the page). Importing this
package loads neither Flask nor torch: `ulic --help` works without the `serve` extra.
"""
