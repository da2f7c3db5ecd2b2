// rig-input-events: prints the events of an evdev node, one line each, for the pointer checks
// (struct input_event from linux/input.h; type and code numbers of linux/input-event-codes.h).
//
// usage: rig-input-events /dev/input/eventN SECONDS
// First a line "name NAME", then for each absolute axis the device has among ABS_X and ABS_Y
// a line "absinfo CODE MIN MAX"; then, as they arrive, "ev TYPE CODE VALUE" for every event
// but EV_SYN, and "syn" for each SYN_REPORT. Output is unbuffered; exits after SECONDS.

#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct input_event ev;
	char name[256] = "";
	unsigned long evbits = 0;
	int fd;

	if (argc != 3) {
		fprintf(stderr, "usage: rig-input-events /dev/input/eventN SECONDS\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	fd = open(argv[1], O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "rig-input-events: open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (ioctl(fd, EVIOCGNAME(sizeof name - 1), name) < 0)
		strcpy(name, "?");
	printf("name %s\n", name);
	if (ioctl(fd, EVIOCGBIT(0, sizeof evbits), &evbits) >= 0 && (evbits & (1UL << EV_ABS))) {
		for (int code = ABS_X; code <= ABS_Y; code++) {
			struct input_absinfo abs;

			if (ioctl(fd, EVIOCGABS(code), &abs) == 0)
				printf("absinfo %d %d %d\n", code, abs.minimum, abs.maximum);
		}
	}
	alarm((unsigned)atoi(argv[2]));
	for (;;) {
		ssize_t n = read(fd, &ev, sizeof ev);

		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof ev) {
			fprintf(stderr, "rig-input-events: read: %s\n", n < 0 ? strerror(errno) : "short");
			return 1;
		}
		if (ev.type == EV_SYN) {
			if (ev.code == SYN_REPORT)
				printf("syn\n");
			continue;
		}
		printf("ev %u %u %d\n", ev.type, ev.code, ev.value);
	}
}
