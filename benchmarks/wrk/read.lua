-- GET RESMON_PATH with the API key (the path is given on the command line too).
package.path = os.getenv("RESMON_WRK_DIR") .. "/?.lua;" .. package.path
require("common")
auth_headers()
wrk.headers["Content-Type"] = nil
