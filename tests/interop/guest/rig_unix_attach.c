// rig-unix-attach: imports a USB/IP device over a unix stream socket and hands the socket to
// vhci_hcd (usbip_protocol.rst OP_REQ_IMPORT/OP_REP_IMPORT; vhci_hcd sysfs "attach").
//
// usage: rig-unix-attach SOCKET BUSID
// prints: port=<n> devid=<hex> speed=<n>

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define VHCI "/sys/devices/platform/vhci_hcd.0"
#define USBIP_VERSION 0x0111
#define OP_REQ_IMPORT 0x8003
#define OP_REP_IMPORT 0x0003
#define DEVICE_RECORD_SIZE 312
#define REC_BUSID 0x100
#define REC_BUSNUM 0x120
#define REC_DEVNUM 0x124
#define REC_SPEED 0x128
#define VDEV_ST_NULL 4

static int die(const char *what)
{
	fprintf(stderr, "rig-unix-attach: %s: %s\n", what, errno ? strerror(errno) : "failed");
	return 1;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			errno = ECONNRESET;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A free port on the hub for this speed: "hs" for speed <= 3 (high), "ss" for 5 and up. */
static int free_port(uint32_t speed)
{
	const char *want = speed >= 5 ? "ss" : "hs";
	char line[256], hub[8];
	unsigned port, status;
	FILE *f = fopen(VHCI "/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof line, f)) {
		if (sscanf(line, "%7s %u %u", hub, &port, &status) != 3)
			continue;
		if (strcmp(hub, want) == 0 && status == VDEV_ST_NULL) {
			fclose(f);
			return (int)port;
		}
	}
	fclose(f);
	errno = EBUSY;
	return -1;
}

int main(int argc, char **argv)
{
	struct sockaddr_un addr;
	uint8_t req[40], hdr[8], rec[DEVICE_RECORD_SIZE];
	char busid[33], attach[64];
	uint32_t busnum, devnum, speed, devid, status;
	int fd, port, n;
	FILE *f;

	if (argc != 3 || strlen(argv[2]) >= 32 || strlen(argv[1]) >= sizeof addr.sun_path) {
		fprintf(stderr, "usage: rig-unix-attach SOCKET BUSID\n");
		return 2;
	}
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return die("socket");
	memset(&addr, 0, sizeof addr);
	addr.sun_family = AF_UNIX;
	strcpy(addr.sun_path, argv[1]);
	if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
		return die("connect");

	memset(req, 0, sizeof req);
	req[0] = USBIP_VERSION >> 8;
	req[1] = USBIP_VERSION & 0xff;
	req[2] = OP_REQ_IMPORT >> 8;
	req[3] = OP_REQ_IMPORT & 0xff;
	memcpy(req + 8, argv[2], strlen(argv[2]));
	if (write_all(fd, req, sizeof req) < 0)
		return die("send OP_REQ_IMPORT");
	if (read_all(fd, hdr, sizeof hdr) < 0)
		return die("read OP_REP_IMPORT header");
	status = be32(hdr + 4);
	if (hdr[0] != (USBIP_VERSION >> 8) || hdr[1] != (USBIP_VERSION & 0xff) ||
	    hdr[2] != (OP_REP_IMPORT >> 8) || hdr[3] != (OP_REP_IMPORT & 0xff)) {
		fprintf(stderr, "rig-unix-attach: bad reply header %02x%02x %02x%02x\n", hdr[0],
			hdr[1], hdr[2], hdr[3]);
		return 1;
	}
	if (status != 0) {
		fprintf(stderr, "rig-unix-attach: import of %s refused, status %u\n", argv[2],
			status);
		return 1;
	}
	if (read_all(fd, rec, sizeof rec) < 0)
		return die("read the device record");
	memcpy(busid, rec + REC_BUSID, 32);
	busid[32] = 0;
	if (strcmp(busid, argv[2]) != 0) {
		fprintf(stderr, "rig-unix-attach: reply is for busid '%s', asked '%s'\n", busid,
			argv[2]);
		return 1;
	}
	busnum = be32(rec + REC_BUSNUM);
	devnum = be32(rec + REC_DEVNUM);
	speed = be32(rec + REC_SPEED);
	devid = busnum << 16 | devnum;

	port = free_port(speed);
	if (port < 0)
		return die("no free vhci port");
	n = snprintf(attach, sizeof attach, "%d %d %u %u", port, fd, devid, speed);
	f = fopen(VHCI "/attach", "w");
	if (!f)
		return die("open " VHCI "/attach");
	if (fwrite(attach, 1, (size_t)n, f) != (size_t)n || fflush(f) != 0)
		return die("write attach");
	if (fclose(f) != 0)
		return die("close attach");
	printf("port=%d devid=0x%08x speed=%u\n", port, devid, speed);
	return 0;
}
