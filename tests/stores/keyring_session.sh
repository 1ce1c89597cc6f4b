#!/bin/sh
# Run a command in a D-Bus session whose gnome-keyring is unlocked and contains one item.
#
# Usage, under dbus-run-session: keyring_session.sh DIR COMMAND [ARG...]
# DIR/item-value is stored as the secret of the item with the attributes
# service=secretd-test user=alice. The keyring's files go under DIR/home.
# The script writes the pid of gnome-keyring-daemon to DIR/gnome-keyring.pid
# and the pid of COMMAND to DIR/command.pid, then replaces itself with COMMAND.
set -eu

dir=$1
shift
export HOME="$dir/home"
export XDG_DATA_HOME="$dir/home/data"
export XDG_RUNTIME_DIR="$dir/runtime"
mkdir -p -m 0700 "$HOME" "$XDG_RUNTIME_DIR"

# With an empty password gnome-keyring falls back to a graphical prompt, so a fixed password is used.
printf 'keyring-password' | gnome-keyring-daemon --unlock --components=secrets >/dev/null
# The forked daemon may not own its bus name yet when the command above returns.
gdbus wait --session --timeout 20 org.freedesktop.secrets
gdbus call --session --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus \
    --method org.freedesktop.DBus.GetConnectionUnixProcessID org.freedesktop.secrets \
    >"$dir/gnome-keyring.pid"

secret-tool store --label='secretd test item' service secretd-test user alice <"$dir/item-value"

echo $$ >"$dir/command.pid"
exec "$@"
