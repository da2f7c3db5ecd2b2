// rig-gotemp-read: reads Go!Temp input reports from a hidraw or ldusb node and decodes them.
//
// usage: rig-gotemp-read DEVICE REPORTS SECONDS
// Each read(2) of these nodes returns one report. A Go!Temp report is 8 bytes: the number of
// samples (0..3), a sequence number, then three little-endian signed 16-bit raw words, of
// which the first `count` are samples in 1/128 degC. For each report prints
// "report COUNT SEQUENCE RAW..." (the `count` samples). For a hidraw node a first line
// "hidraw BUSTYPE VENDOR PRODUCT" (hex) gives HIDIOCGRAWINFO. Exits 0 after REPORTS reports,
// 1 on a read error or a report that is not 8 bytes, 3 when SECONDS pass first.

#include <errno.h>
#include <fcntl.h>
#include <linux/hidraw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static void timed_out(int sig)
{
	(void)sig;
	static const char msg[] = "rig-gotemp-read: timed out\n";
	if (write(2, msg, sizeof msg - 1) < 0) {
		/* nothing to do */
	}
	_exit(3);
}

int main(int argc, char **argv)
{
	struct hidraw_devinfo info;
	unsigned char buf[64];
	int fd, want;

	if (argc != 4) {
		fprintf(stderr, "usage: rig-gotemp-read DEVICE REPORTS SECONDS\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	want = atoi(argv[2]);
	fd = open(argv[1], O_RDWR);
	if (fd < 0) {
		fprintf(stderr, "rig-gotemp-read: open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (ioctl(fd, HIDIOCGRAWINFO, &info) == 0)
		printf("hidraw %x %04x %04x\n", (unsigned)info.bustype, (unsigned)(uint16_t)info.vendor,
		       (unsigned)(uint16_t)info.product);
	signal(SIGALRM, timed_out);
	alarm((unsigned)atoi(argv[3]));
	for (int got = 0; got < want;) {
		ssize_t n = read(fd, buf, sizeof buf);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "rig-gotemp-read: read: %s\n", strerror(errno));
			return 1;
		}
		if (n != 8) {
			fprintf(stderr, "rig-gotemp-read: a report of %zd bytes, expected 8\n", n);
			return 1;
		}
		printf("report %u %u", buf[0], buf[1]);
		for (int i = 0; i < buf[0] && i < 3; i++)
			printf(" %d", (int16_t)(buf[2 + 2 * i] | (buf[3 + 2 * i] << 8)));
		printf("\n");
		got++;
	}
	return 0;
}
