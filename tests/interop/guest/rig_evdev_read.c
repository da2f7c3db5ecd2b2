// rig-evdev-read: prints what is typed on an evdev keyboard as text, US layout
// (linux/input-event-codes.h key codes; struct input_event from linux/input.h).
//
// usage: rig-evdev-read /dev/input/eventN SECONDS
// Text goes to stdout unbuffered (Enter as "\n", unknown keys as <KEY_n>); each key event
// goes to stderr as "code value". Exits after SECONDS.

#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Key codes 0..57 of the main block: plain and shifted characters, 0 = no character. */
static const char plain[58] = {
	0,   0,   '1', '2', '3', '4', '5', '6', '7', '8', '9', '0', '-', '=', 0,   '\t',
	'q', 'w', 'e', 'r', 't', 'y', 'u', 'i', 'o', 'p', '[', ']', '\n', 0,  'a', 's',
	'd', 'f', 'g', 'h', 'j', 'k', 'l', ';', '\'', '`', 0,  '\\', 'z', 'x', 'c', 'v',
	'b', 'n', 'm', ',', '.', '/', 0,   '*', 0,   ' ',
};
static const char shifted[58] = {
	0,   0,   '!', '@', '#', '$', '%', '^', '&', '*', '(', ')', '_', '+', 0,   '\t',
	'Q', 'W', 'E', 'R', 'T', 'Y', 'U', 'I', 'O', 'P', '{', '}', '\n', 0,  'A', 'S',
	'D', 'F', 'G', 'H', 'J', 'K', 'L', ':', '"', '~', 0,   '|', 'Z', 'X', 'C', 'V',
	'B', 'N', 'M', '<', '>', '?', 0,   '*', 0,   ' ',
};

int main(int argc, char **argv)
{
	struct input_event ev;
	int fd, shift = 0;

	if (argc != 3) {
		fprintf(stderr, "usage: rig-evdev-read /dev/input/eventN SECONDS\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	setvbuf(stderr, NULL, _IOLBF, 0);
	fd = open(argv[1], O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "rig-evdev-read: open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	alarm((unsigned)atoi(argv[2]));
	for (;;) {
		ssize_t n = read(fd, &ev, sizeof ev);

		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof ev) {
			fprintf(stderr, "rig-evdev-read: read: %s\n", n < 0 ? strerror(errno) : "short");
			return 1;
		}
		if (ev.type != EV_KEY)
			continue;
		fprintf(stderr, "key %u %d\n", ev.code, ev.value);
		if (ev.code == KEY_LEFTSHIFT || ev.code == KEY_RIGHTSHIFT) {
			shift = ev.value != 0;
			continue;
		}
		if (ev.value != 1) /* releases and autorepeats type nothing */
			continue;
		if (ev.code < sizeof plain && plain[ev.code])
			putchar(shift ? shifted[ev.code] : plain[ev.code]);
		else
			printf("<KEY_%u>", ev.code);
	}
}
