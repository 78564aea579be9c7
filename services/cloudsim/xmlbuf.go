package cloudsim

import (
	"bytes"
	"encoding/xml"
	"strconv"
)

// xmlBuf writes XML by hand for the largest responses (DescribeInstances pages): encoding/xml's
// reflection was most of the cost of a 1000-instance page. Element names are constants; text
// is escaped.
type xmlBuf struct{ bytes.Buffer }

func (b *xmlBuf) open(name string) {
	b.WriteByte('<')
	b.WriteString(name)
	b.WriteByte('>')
}

func (b *xmlBuf) close(name string) {
	b.WriteString("</")
	b.WriteString(name)
	b.WriteByte('>')
}

func (b *xmlBuf) text(name, value string) {
	b.open(name)
	_ = xml.EscapeText(b, []byte(value))
	b.close(name)
}

func (b *xmlBuf) optText(name, value string) {
	if value != "" {
		b.text(name, value)
	}
}

func (b *xmlBuf) int(name string, v int) { b.text(name, strconv.Itoa(v)) }

func (b *xmlBuf) bool(name string, v bool) { b.text(name, strconv.FormatBool(v)) }

func (b *xmlBuf) tags(tags []ec2Tag) {
	b.open("tagSet")
	for _, t := range tags {
		b.open("item")
		b.text("key", t.Key)
		b.text("value", t.Value)
		b.close("item")
	}
	b.close("tagSet")
}

// writeInstance writes one instance item exactly as encoding/xml would from ec2Instance's tags.
func (b *xmlBuf) writeInstance(x *ec2Instance) {
	b.open("item")
	b.text("instanceId", x.InstanceID)
	b.text("imageId", x.ImageID)
	b.open("instanceState")
	b.int("code", x.State.Code)
	b.text("name", x.State.Name)
	b.close("instanceState")
	b.text("privateDnsName", x.PrivateDNSName)
	b.text("dnsName", x.DNSName)
	b.text("reason", x.Reason)
	b.int("amiLaunchIndex", x.AmiLaunchIndex)
	b.text("instanceType", x.InstanceType)
	b.text("launchTime", x.LaunchTime)
	b.open("placement")
	b.text("availabilityZone", x.AvailabilityZone)
	b.text("tenancy", x.Tenancy)
	b.close("placement")
	b.optText("platform", x.Platform)
	b.open("monitoring")
	b.text("state", x.Monitoring)
	b.close("monitoring")
	b.text("privateIpAddress", x.PrivateIPAddress)
	b.text("architecture", x.Architecture)
	b.text("rootDeviceType", x.RootDeviceType)
	b.text("rootDeviceName", x.RootDeviceName)
	if len(x.BlockDevices) > 0 {
		b.open("blockDeviceMapping")
		for _, d := range x.BlockDevices {
			b.open("item")
			b.text("deviceName", d.DeviceName)
			b.open("ebs")
			b.text("volumeId", d.VolumeID)
			b.text("status", d.Status)
			b.text("attachTime", d.AttachTime)
			b.bool("deleteOnTermination", d.DeleteOnTermination)
			b.close("ebs")
			b.close("item")
		}
		b.close("blockDeviceMapping")
	}
	b.text("virtualizationType", x.VirtualizationType)
	if len(x.Tags) > 0 {
		b.tags(x.Tags)
	}
	b.text("hypervisor", x.Hypervisor)
	b.bool("ebsOptimized", x.EbsOptimized)
	b.text("platformDetails", x.PlatformDetails)
	if x.StateReason != nil {
		b.open("stateReason")
		b.text("code", x.StateReason.Code)
		b.text("message", x.StateReason.Message)
		b.close("stateReason")
	}
	b.close("item")
}

// rawXML renders the DescribeInstances response.
func (r *describeInstancesResponse) rawXML() []byte {
	var b xmlBuf
	b.Grow(256 + 1500*len(r.Reservations))
	b.WriteString(xml.Header)
	b.WriteString(`<DescribeInstancesResponse xmlns="` + ec2Namespace + `">`)
	b.text("requestId", r.RequestID)
	b.open("reservationSet")
	for i := range r.Reservations {
		res := &r.Reservations[i]
		b.open("item")
		b.text("reservationId", res.ReservationID)
		b.text("ownerId", res.OwnerID)
		b.open("instancesSet")
		for j := range res.Instances {
			b.writeInstance(&res.Instances[j])
		}
		b.close("instancesSet")
		b.close("item")
	}
	b.close("reservationSet")
	b.optText("nextToken", r.NextToken)
	b.close("DescribeInstancesResponse")
	return b.Bytes()
}
