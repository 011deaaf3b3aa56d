#!/usr/bin/env bash
# Install a throwaway Moodle 4.5 site to develop and test against (the real-site tests: tests/moodle/test_bridge.py,
# ...). The test suite needs none: it makes its own sites from ../shared/moodle/ (tests/support/moodle_site.py); this
# site is for running those tests on a site of your own (TOOLSYNC_TEST_MOODLE_DIRROOT) and for trying things by hand.
# FOR TESTS ONLY: the site runs as the calling user, with a world-writable dataroot and no web server.
#
# Usage:
#   scripts/install_test_moodle.sh [options] SOURCE_DIR TARGET_DIR
#
#   SOURCE_DIR   an unpacked Moodle 4.5 tree (the folder holding version.php and admin/cli/install.php).
#                It is copied to TARGET_DIR/moodle, or used in place if it already is TARGET_DIR/moodle.
#   TARGET_DIR   receives moodle/ (code + the generated config.php) and moodledata/.
#
# Database options (defaults in brackets):
#   --dbhost=HOST [127.0.0.1]  --dbport=PORT [3306]  --dbname=NAME [moodle]
#   --dbuser=USER [moodle]     --dbpass=PASS [moodle] --prefix=PREFIX [mdl_]
#   --start-mariadb=DIR  initialise (first time only) and start a private mariadbd on 127.0.0.1:--dbport
#                        with its data and socket in DIR, create --dbuser/--dbpass and --dbname, and leave it
#                        running. Stop it with: kill "$(cat DIR/mysqld.pid)". Needs mariadb-server installed.
#                        If the site is already installed, only the server is started: rerun the same command
#                        to bring the database back after a reboot.
# Other options:
#   --php=PHP [php]  --adminpass=PASS [Admin-pass-1]  --fullname=NAME [toolsync test site]  --shortname=NAME [tstest]
#   --wwwroot=URL [http://localhost]  (no web server is set up; with a path such as http://localhost/moodle the
#                 installer takes TARGET_DIR for the web root and refuses the dataroot beside moodle/ as insecure)
#
# PHP needs these extensions (Debian/Ubuntu):
#   apt-get install -y php-cli php-mysql php-xml php-mbstring php-curl php-zip php-gd php-intl php-soap
#
# Example (what the bridge tests were developed against):
#   scripts/install_test_moodle.sh --start-mariadb=/srv/moodle-test/mariadb --dbport=33061 \
#       /path/to/moodle-4.5-source /srv/moodle-test
#   TOOLSYNC_TEST_MOODLE_DIRROOT=/srv/moodle-test/moodle .venv/bin/pytest tests/moodle/test_bridge.py
set -euo pipefail

die() { echo "install_test_moodle.sh: $*" >&2; exit 1; }

dbhost=127.0.0.1 dbport=3306 dbname=moodle dbuser=moodle dbpass=moodle prefix=mdl_
wwwroot=http://localhost php=php adminpass=Admin-pass-1 fullname="toolsync test site" shortname=tstest mariadb_dir=""
positional=()
for arg in "$@"; do
    case "$arg" in
        --dbhost=*) dbhost=${arg#*=} ;;
        --dbport=*) dbport=${arg#*=} ;;
        --dbname=*) dbname=${arg#*=} ;;
        --dbuser=*) dbuser=${arg#*=} ;;
        --dbpass=*) dbpass=${arg#*=} ;;
        --prefix=*) prefix=${arg#*=} ;;
        --php=*) php=${arg#*=} ;;
        --wwwroot=*) wwwroot=${arg#*=} ;;
        --adminpass=*) adminpass=${arg#*=} ;;
        --fullname=*) fullname=${arg#*=} ;;
        --shortname=*) shortname=${arg#*=} ;;
        --start-mariadb=*) mariadb_dir=${arg#*=} ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        --*) die "unknown option $arg (see --help)" ;;
        *) positional+=("$arg") ;;
    esac
done
[ ${#positional[@]} -eq 2 ] || die "expected SOURCE_DIR and TARGET_DIR (see --help)"
source_dir=$(realpath "${positional[0]}")
target_dir=${positional[1]}
[ -f "$source_dir/version.php" ] && [ -f "$source_dir/admin/cli/install.php" ] \
    || die "$source_dir is not a Moodle source tree (no version.php / admin/cli/install.php)"
command -v "$php" >/dev/null || die "php command '$php' not found"

find_bin() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true; }

start_mariadb() {
    local dir=$1 datadir=$1/data sock=$1/mysqld.sock
    local user_args=() install_db mariadbd client
    install_db=$(find_bin mariadb-install-db); mariadbd=$(find_bin mariadbd); client=$(find_bin mariadb)
    [ -n "$mariadbd" ] && [ -n "$client" ] || die "mariadbd/mariadb not found: apt-get install -y mariadb-server"
    if [ "$(id -u)" -eq 0 ]; then user_args=(--user=root); fi
    mkdir -p "$dir"
    dir=$(realpath "$dir"); datadir=$dir/data; sock=$dir/mysqld.sock
    if "$client" --no-defaults --socket="$sock" -uroot -e 'SELECT 1' >/dev/null 2>&1; then
        echo "MariaDB already running on $sock"
    else
        if [ ! -d "$datadir/mysql" ]; then
            [ -n "$install_db" ] || die "mariadb-install-db not found: apt-get install -y mariadb-server"
            "$install_db" --datadir="$datadir" --auth-root-authentication-method=normal --skip-test-db \
            "${user_args[@]}" >"$dir/install-db.log" 2>&1 || die "mariadb-install-db failed: see $dir/install-db.log"
        fi
        # setsid + nohup: the server outlives this script (and the terminal that ran it).
        setsid nohup "$mariadbd" --no-defaults --datadir="$datadir" --socket="$sock" --pid-file="$dir/mysqld.pid" \
            --bind-address=127.0.0.1 --port="$dbport" --skip-log-bin --innodb-flush-log-at-trx-commit=2 \
            --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci --max-allowed-packet=64M \
            --log-error="$dir/error.log" "${user_args[@]}" >/dev/null 2>&1 < /dev/null &
        for _ in $(seq 1 150); do
            "$client" --no-defaults --socket="$sock" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
            sleep 0.2
        done
        "$client" --no-defaults --socket="$sock" -uroot -e 'SELECT 1' >/dev/null 2>&1 \
            || die "mariadbd did not start: see $dir/error.log"
        echo "MariaDB started: 127.0.0.1:$dbport, data in $datadir, pid file $dir/mysqld.pid"
    fi
    "$client" --no-defaults --socket="$sock" -uroot -e "
        CREATE DATABASE IF NOT EXISTS \`$dbname\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
        CREATE USER IF NOT EXISTS '$dbuser'@'127.0.0.1' IDENTIFIED BY '$dbpass';
        CREATE USER IF NOT EXISTS '$dbuser'@'localhost' IDENTIFIED BY '$dbpass';
        GRANT ALL ON \`$dbname\`.* TO '$dbuser'@'127.0.0.1';
        GRANT ALL ON \`$dbname\`.* TO '$dbuser'@'localhost';"
}

if [ -n "$mariadb_dir" ]; then start_mariadb "$mariadb_dir"; fi

mkdir -p "$target_dir"
target_dir=$(realpath "$target_dir")
site_dir=$target_dir/moodle
data_dir=$target_dir/moodledata

if [ -f "$site_dir/config.php" ]; then
    version=$("$php" "$site_dir/admin/cli/cfg.php" --name=version 2>/dev/null) \
        || die "$site_dir/config.php exists but the site does not answer (database down, or a half install?)"
    echo "The site in $site_dir is installed already (version $version): nothing to do."
    exit 0
fi
if [ "$source_dir" != "$site_dir" ]; then
    [ -e "$site_dir" ] && die "$site_dir exists but has no config.php: remove it or use it as SOURCE_DIR"
    [ -e "$source_dir/config.php" ] && die "$source_dir has a config.php: it is an installed site, not a source tree"
    echo "Copying $source_dir to $site_dir ..."
    cp -a "$source_dir" "$site_dir"
fi
mkdir -p "$data_dir"

# --allow-unstable: some 4.5 trees are marked as development builds; this is a test site either way.
# max_input_vars: Moodle 4.5's environment check requires >= 5000 even on the command line (Debian's default is 1000).
# install.php writes config.php before its environment checks, so a failed run leaves one behind: remove it, or
# the next run would take the site for installed.
if ! "$php" -d max_input_vars=5000 "$site_dir/admin/cli/install.php" \
    --non-interactive --agree-license --allow-unstable \
    --lang=en --dbtype=mariadb --dbhost="$dbhost" --dbport="$dbport" --dbname="$dbname" \
    --dbuser="$dbuser" --dbpass="$dbpass" --prefix="$prefix" \
    --wwwroot="$wwwroot" --dataroot="$data_dir" \
    --fullname="$fullname" --shortname="$shortname" --adminpass="$adminpass" --adminemail=admin@example.com
then
    rm -f "$site_dir/config.php"
    die "admin/cli/install.php failed (see above); config.php removed. If it failed after creating tables, empty \
the database $dbname before retrying."
fi

echo
echo "Installed: $site_dir (config.php), dataroot $data_dir, database $dbname on $dbhost:$dbport (prefix $prefix)."
echo "Bridge tests: TOOLSYNC_TEST_MOODLE_DIRROOT=$site_dir .venv/bin/pytest tests/moodle/test_bridge.py"
